"""Executors: run one batch function over rows of the sample table, outputs in row order.

A batch function has ``setup()`` (load the model once) and ``__call__(batch) -> dict of
arrays`` with one row per image of the batch (see :mod:`curate.learn.batchfn`). Every
executor in :data:`EXECUTORS` has the signature of :func:`curate.execute.local.run_batches`,
so a caller passes one as ``executor=`` to ``predict``, ``embed`` and ``annotate`` with the same
batch function. Only ``local`` exists today; a recipe naming another (e.g. ``ray``) fails
validation. Other packages add executors through the ``curate.executors`` entry-point group.
"""

from __future__ import annotations

from typing import Any, Protocol

from curate.registry import Registry


class BatchFn(Protocol):
    def setup(self) -> None: ...

    def __call__(self, batch: dict) -> dict[str, Any]: ...


EXECUTORS: Registry = Registry("executor", entry_point_group="curate.executors")
EXECUTORS.register("local", "curate.execute.local:run_batches")
