"""The local executor: this process runs a batch function over the table, batch by batch.

Decoding of the next batch overlaps the current batch's compute inside
:func:`curate.data.iter_image_batches` (a thread pool; PIL and torch release the GIL).
Outputs go into arrays preallocated from the first batch, so memory stays one copy of
the result and no concatenation happens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from curate.errors import UsageError
from curate.execute import BatchFn

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import torch


def run_batches(
    fn: BatchFn,
    table: "datasets.Dataset",
    *,
    batch_size: int,
    indices: Sequence[int] | np.ndarray | None = None,
    size: tuple[int, int] | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """``fn`` over the table's rows ``indices`` (all rows by default); output row i is for ``indices[i]``.

    ``size=(height, width)`` resizes images while decoding.
    """
    from curate.data import iter_image_batches

    rows = len(table) if indices is None else len(indices)
    # overlap decoding with compute only when the model is not on the CPU (see iter_image_batches)
    on_gpu = str(getattr(fn, "device", "cpu")).startswith("cuda") or (
        getattr(fn, "device", None) == "auto" and _cuda_available())
    batches = iter_image_batches(table, batch_size=batch_size, indices=indices, size=size, progress=progress,
                                 prefetch=on_gpu)
    return map_batches(fn, batches, rows=rows)


def map_batches(fn: BatchFn, batches: Iterable[dict], *, rows: int) -> dict[str, np.ndarray]:
    """``fn.setup()`` once, then ``fn`` on each batch; outputs stacked in batch order into ``rows`` rows."""
    if rows == 0:
        raise UsageError("nothing to run: the selection has 0 rows")
    fn.setup()
    outputs: dict[str, np.ndarray] = {}
    filled = 0
    for batch in batches:
        n = len(batch["image"])
        if filled + n > rows:
            raise ValueError(f"the batches hold more than the {rows} rows expected")
        result = {name: np.asarray(values) for name, values in fn(batch).items()}
        if outputs and result.keys() != outputs.keys():
            raise ValueError(f"the batch function returned {sorted(result)} after {sorted(outputs)}")
        for name, values in result.items():
            if len(values) != n:
                raise ValueError(f"the batch function returned {len(values)} rows of `{name}` for a batch of {n}")
            if name not in outputs:
                outputs[name] = np.empty((rows, *values.shape[1:]), dtype=values.dtype)
            outputs[name][filled:filled + n] = values
        filled += n
    if filled != rows:
        raise ValueError(f"the batches held {filled} rows but {rows} were expected")
    return outputs


def array_batches(images: "np.ndarray | torch.Tensor", *, batch_size: int) -> Iterator[dict]:
    """In-memory images (N, H, W, 3) as executor batches ``{"index", "image"}``, in order."""
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    for start in range(0, len(images), batch_size):
        stop = min(start + batch_size, len(images))
        yield {"index": np.arange(start, stop), "image": images[start:stop]}


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
