"""Decode the sample table's images into uint8 arrays for model steps.

The ``image`` column is read as raw storage (``Image(decode=False)``: PNG/JPEG bytes or
a file path) straight from Arrow, and decoded with PIL in a small thread pool, which
skips ``datasets``' per-row formatting. Sizes are ``(height, width)``, like the arrays.
"""

from __future__ import annotations

import functools
import io
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from curate.data._parallel import default_workers, submit_chunks
from curate.data.table import column
from curate.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    from PIL import Image


def _row_indices(table: "datasets.Dataset", indices: Sequence[int] | np.ndarray | None) -> np.ndarray:
    n = len(table)
    if indices is None:
        return np.arange(n, dtype=np.int64)
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(f"`indices` must be a 1-D array of integers, got dtype {idx.dtype} and shape {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"`indices` must lie in 0..{n - 1} (the table has {n} rows), "
                         f"got values from {idx.min()} to {idx.max()}")
    return idx.astype(np.int64, copy=False)


def _raw_images(table: "datasets.Dataset", rows: np.ndarray) -> tuple[list[bytes | None], list[str | None]]:
    """The stored bytes and paths of ``rows`` of the ``image`` column, without decoding."""
    import datasets

    if not isinstance(table.features.get("image"), datasets.Image):
        raise UsageError(f"the table has no Image() column `image` (columns: {', '.join(table.column_names)})")
    storage = table.with_format("arrow", columns=["image"])[rows.tolist()]["image"].combine_chunks()
    return storage.field("bytes").to_pylist(), storage.field("path").to_pylist()


EXIF_ORIENTATION = 0x0112


def as_rgb(im: "Image.Image") -> "Image.Image":
    """8-bit RGB as a viewer shows it: EXIF rotation applied (phone photos are stored sideways) and
    16/32-bit grayscale scaled to 8 bits (``convert("RGB")`` would clip it to white)."""
    from PIL import Image, ImageOps

    if im.getexif().get(EXIF_ORIENTATION, 1) != 1:
        im = ImageOps.exif_transpose(im)
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        wide = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or wide.max(initial=0) <= 65535 else wide.max()
        im = Image.fromarray(np.clip(wide * (255.0 / top), 0, 255).round().astype(np.uint8))
    return im if im.mode == "RGB" else im.convert("RGB")


def _decode_one(data: bytes | None, path: str | None, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data) if data is not None else path) as im:
        rgb = as_rgb(im)
        if size is not None and rgb.size != (size[1], size[0]):
            rgb = rgb.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(rgb)


def _decode_chunk(rows: np.ndarray, data: list, paths: list, *, size: tuple[int, int] | None) -> list[np.ndarray]:
    out = []
    for row, d, p in zip(rows, data, paths):
        try:
            out.append(_decode_one(d, p, size))
        except (OSError, ValueError, SyntaxError) as exc:  # PIL raises these for bad or missing files
            where = f"file {p}" if d is None else "its stored bytes"
            raise UsageError(f"cannot decode the image of row {row} ({where}): {exc}") from exc
    return out


def _stack(rows: np.ndarray, arrays: list[np.ndarray], size: tuple[int, int] | None) -> np.ndarray:
    if not arrays:
        return np.zeros((0, *(size or (0, 0)), 3), dtype=np.uint8)
    shapes = np.array([a.shape[:2] for a in arrays])
    odd = np.flatnonzero((shapes != shapes[0]).any(axis=1))
    if odd.size:
        (h0, w0), (h1, w1) = shapes[0], shapes[odd[0]]
        raise UsageError(f"images differ in size ({h0}x{w0} at row {rows[0]}, {h1}x{w1} at row {rows[odd[0]]}); "
                         "pass `size=(height, width)` to resize them")
    return np.stack(arrays)


def stored_images(table: "datasets.Dataset", rows: np.ndarray) -> tuple[list[bytes | None], list[str | None]]:
    """The stored bytes and paths of ``rows`` of the ``image`` column (for a remote worker to decode)."""
    return _raw_images(table, _row_indices(table, rows))


def decode_stored(rows: np.ndarray, data: Sequence[bytes | None], paths: Sequence[str | None], *,
                  size: tuple[int, int] | None = None) -> np.ndarray:
    """RGB uint8 ``(N, H, W, 3)`` of stored bytes/paths (from :func:`stored_images`), in this thread;
    ``rows`` only name the rows in errors."""
    return _stack(rows, _decode_chunk(rows, list(data), list(paths), size=size), size)


def _submit(pool: ThreadPoolExecutor, table: "datasets.Dataset", rows: np.ndarray,
            size: tuple[int, int] | None, parts: int) -> list[Future]:
    data, paths = _raw_images(table, rows)
    return submit_chunks(pool, functools.partial(_decode_chunk, size=size), rows, data, paths, parts=parts)


def _gather(rows: np.ndarray, futures: list[Future], size: tuple[int, int] | None,
            stack: bool = True) -> np.ndarray | list[np.ndarray]:
    arrays = [a for f in futures for a in f.result()]
    return _stack(rows, arrays, size) if stack else arrays


def decode_images(
    table: "datasets.Dataset",
    indices: Sequence[int] | np.ndarray | None = None,
    *,
    size: tuple[int, int] | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """RGB uint8 ``(N, H, W, 3)`` of the table's rows ``indices`` (all rows by default).

    Grayscale, palette and RGBA images are converted to RGB (alpha is dropped). With
    ``size=(height, width)`` images of another size are resized (PIL bilinear); without
    it, images of different sizes are an error.
    """
    rows = _row_indices(table, indices)
    workers = workers or default_workers()
    with ThreadPoolExecutor(workers) as pool:
        return _gather(rows, _submit(pool, table, rows, size, workers), size)


def iter_image_batches(
    table: "datasets.Dataset",
    *,
    batch_size: int,
    indices: Sequence[int] | np.ndarray | None = None,
    size: tuple[int, int] | None = None,
    progress: bool = False,
    workers: int | None = None,
    prefetch: bool = True,
    stack: bool = True,
) -> Iterator[dict]:
    """Decoded batches of ``indices`` (all rows by default), in order.

    Each batch is ``{"index": int64 (B,), "id": [str], "image": uint8 (B, H, W, 3),
    "label": int64 (B,)}``; ``index`` holds row positions in ``table``.
    With ``prefetch`` the next batch decodes in the thread pool while the caller works
    on the current one (PIL and torch both release the GIL), which pays when the model
    runs on a GPU; when torch already uses every CPU core, ``prefetch=False`` (decode,
    then compute) is faster because the decode threads would preempt torch's.
    With ``stack=False`` ``image`` is a list of ``(H_i, W_i, 3)`` arrays, each at its own size
    unless ``size`` is given, for callers that handle images of mixed sizes themselves.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    rows = _row_indices(table, indices)
    ids = column(table, "id").take(rows).to_pylist()
    labels = column(table, "label").take(rows).to_numpy().astype(np.int64, copy=False)
    starts = range(0, len(rows), batch_size)
    workers = workers or default_workers()
    pending: deque[tuple[int, list[Future]]] = deque()
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(rows), disable=not progress, unit="img",
                                                   desc="decode") as bar:
        try:
            for start in starts:
                pending.append((start, _submit(pool, table, rows[start:start + batch_size], size, workers)))
                if prefetch and len(pending) < 2 and start + batch_size < len(rows):
                    continue
                yield _batch(pending.popleft(), rows, ids, labels, batch_size, size, stack, bar)
            while pending:
                yield _batch(pending.popleft(), rows, ids, labels, batch_size, size, stack, bar)
        finally:
            for _, futures in pending:
                for f in futures:
                    f.cancel()


def _batch(item: tuple[int, list[Future]], rows: np.ndarray, ids: list[str], labels: np.ndarray,
           batch_size: int, size: tuple[int, int] | None, stack: bool, bar) -> dict:
    start, futures = item
    sl = slice(start, start + batch_size)
    images = _gather(rows[sl], futures, size, stack)
    bar.update(len(images))
    return {"index": rows[sl], "id": ids[sl], "image": images, "label": labels[sl]}
