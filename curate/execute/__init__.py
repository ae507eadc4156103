"""Executors: run one batch function over rows of the sample table, outputs in row order.

A batch function has ``setup()`` (load the model once) and ``__call__(batch) -> dict of
arrays`` with one row per image of the batch (see :mod:`curate.learn.batchfn`). Every
executor in :data:`EXECUTORS` has the signature of :func:`curate.execute.local.run_batches`,
so steps pick one by name (the recipe's ``defaults.executor``) and pass the same function.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Protocol

from curate.errors import UsageError
from curate.registry import Registry


class BatchFn(Protocol):
    def setup(self) -> None: ...

    def __call__(self, batch: dict) -> dict[str, Any]: ...


EXECUTORS: Registry = Registry("executor")
EXECUTORS.register("local", "curate.execute.local:run_batches")
EXECUTORS.register("ray", "curate.execute.ray:run_batches")


def require(module: str, *, extra: str) -> ModuleType:
    """Import an optional dependency, or fail with the install command of the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise UsageError(f"this needs the optional package `{module}`; install it with "
                         f"pip install 'curate-toolkit[{extra}]'") from err
