"""The Ray executor (optional extra ``ray``): registered so that choosing it gives the install hint.

Its implementation (Ray Data ``map_batches`` over shards of the table, each worker
calling ``setup()`` once, shard outputs merged atomically) is not written yet.
"""

from __future__ import annotations

from curate.errors import UsageError
from curate.execute import require

require("ray", extra="ray")


def run_batches(fn, table, *, batch_size, indices=None, size=None, progress=True):
    raise UsageError("the Ray executor is not implemented yet; use executor: local")
