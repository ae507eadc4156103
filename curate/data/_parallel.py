"""A small thread pool helper: PIL releases the GIL inside its codecs."""

from __future__ import annotations

import os
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

CHUNK = 512  # items per task in thread_map: few futures, yet a progress bar that moves


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def submit_chunks(pool: Executor, fn: Callable[..., list[R]], *columns: Sequence, parts: int) -> list[Future]:
    """Submit ``fn(*column_chunks)`` on ``parts`` contiguous chunks: one future per chunk, not per item."""
    n = len(columns[0])
    bounds = [round(i * n / parts) for i in range(parts + 1)] if n else [0, 0]
    return [pool.submit(fn, *(c[a:b] for c in columns)) for a, b in zip(bounds, bounds[1:])]


def thread_map(fn: Callable[[T], R], items: Sequence[T], *, workers: int | None = None,
               progress: bool = False, desc: str | None = None) -> list[R]:
    """``[fn(x) for x in items]`` on a few threads, in order."""
    from tqdm.auto import tqdm

    workers = workers or default_workers()
    parts = max(workers, -(-len(items) // CHUNK))
    out: list[R] = []
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(items), disable=not progress, desc=desc) as bar:
        for future in submit_chunks(pool, lambda chunk: [fn(x) for x in chunk], items, parts=parts):
            out.extend(future.result())
            bar.update(len(out) - bar.n)
    return out
