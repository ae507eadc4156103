"""Executors: run one batch function over rows of the sample table, outputs in row order.

A batch function has ``setup()`` (load the model once) and ``__call__(batch) -> dict of arrays``
with one row per image of the batch (see :mod:`curate.learn.batchfn`). Every executor in
:data:`EXECUTORS` has the signature of :func:`curate.execute.local.run_batches`, so a caller passes
one as ``executor=`` to ``predict``, ``embed`` and ``annotate`` with the same batch function:
``local`` runs it in this process, ``ray`` on a Ray cluster (:mod:`curate.execute.ray`, an optional
extra). An executor that takes options (cluster, workers, a folder for resumable shards) has a
``configure(options=, shard_dir=, signature=)`` method returning a configured copy, and says what it
did in ``record``. Other packages add executors through the ``curate.executors`` entry-point group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

from curate.registry import Registry


class BatchFn(Protocol):
    def setup(self) -> None: ...

    def __call__(self, batch: dict) -> dict[str, Any]: ...


EXECUTORS: Registry = Registry("executor", entry_point_group="curate.executors")
EXECUTORS.register("local", "curate.execute.local:run_batches")
EXECUTORS.register("ray", "curate.execute.ray:run_batches")


def create_executor(name: str, *, options: Any = None, shard_dir: str | Path | None = None,
                    signature: str = "") -> Callable[..., dict]:
    """Executor ``name``, configured with its ``options`` and a ``shard_dir`` for resumable shards when it
    takes them (shards of another ``signature`` are never reused)."""
    run = EXECUTORS.get(name)
    configure = getattr(run, "configure", None)
    return configure(options=options, shard_dir=shard_dir, signature=signature) if configure else run


def executor_problem(name: str) -> str | None:
    """Why a recipe may not name executor ``name`` (unknown, or its extra is not installed), or None."""
    if name not in EXECUTORS:
        return EXECUTORS.unknown_message(name)
    unavailable = getattr(EXECUTORS.get(name), "unavailable", None)
    return unavailable() if unavailable else None


def executor_record(name: str, run: Callable[..., dict]) -> dict[str, Any]:
    """What an executor did, for step.json: its own ``record`` or just its name."""
    return dict(getattr(run, "record", None) or {"name": name})
