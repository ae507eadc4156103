"""Recall calibration: the smallest query-time knob (HNSW ``efSearch``, IVF ``nprobe``) that reaches a
recall@k target, measured against exact search (the idea of FAISS's auto-tuning).

The queries are a held sample of the indexed vectors: ``build_index`` trains on and adds every
other row first, calibrates with the held rows as queries (the index has not seen them, so they
are as new to it as a user's query, and no query can find itself), and adds them afterwards.
A stored vector searched in a finished HNSW graph enters through its own links and can overstate
recall by several points; k-means cells fit to a point find its neighbours more easily too.
The truth is exact search over the same rows and metric.

Recall counts a found row as a hit when its exact distance is no larger than the k-th true
distance, so ties (exact duplicates) do not count against the index. A setting *reaches* the
target when the one-sided 99% lower confidence bound of its mean recall does (a margin of
about 0.008 at 1,000 queries), so that new queries see the target too, plus the kind's
``calibration_allowance`` for what the calibration cannot see (HNSW: the held rows join the
graph last). The sweep doubles
the knob until the target is reached, then bisects down to the smallest integer that reaches
it (recall rises with the knob, and so does the time of a search).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import faiss

    from curate.index.kinds import IndexKind

log = logging.getLogger(__name__)

K = 10
"""Calibration measures recall@10 (capped at the number of indexed rows)."""
QUERIES = 1000
"""Default calibration sample; at most a twentieth of the rows is held (a larger share makes the index
calibrated on differ more from the one delivered: smaller, and then joined by more rows at once)."""
_Z99 = 2.3263  # one-sided 99% normal quantile
_PLATEAU = 0.005


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """How an approximate index's query-time knob was chosen, and the recall it gave.

    ``chosen_by`` is ``"target"`` (the sweep picked ``value``) or ``"explicit"`` (the caller's
    value, only measured). ``recall`` is the mean recall@``k`` over ``queries`` held rows and
    ``recall_low`` its one-sided 99% lower bound; ``reached`` says whether ``recall_low`` >=
    ``target`` + ``allowance`` (the kind's margin for the index calibrated on differing from the
    one delivered). ``sweep`` lists every (value, recall, recall_low) measured, in the order tried.
    """

    knob: str
    value: int
    chosen_by: str
    target: float
    allowance: float = 0.0
    recall: float
    recall_low: float
    reached: bool
    k: int
    queries: int
    seconds: float
    sweep: tuple[tuple[int, float, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["sweep"] = [list(p) for p in self.sweep]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Calibration":
        values = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        values["sweep"] = tuple((int(v), float(r), float(low)) for v, r, low in values.get("sweep", ()))
        return cls(**values)

    def summary(self) -> str:
        verdict = "reaches" if self.reached else "MISSES"
        allowance = f" + {self.allowance:g} allowance" if self.allowance else ""
        return (f"{self.knob}={self.value} ({self.chosen_by}): recall@{self.k} {self.recall:.3f} "
                f"(99% lower bound {self.recall_low:.3f}) {verdict} the target {self.target:g}{allowance} on "
                f"{self.queries} held rows, {self.seconds:.2f} s")


def exact_neighbors(x: np.ndarray, queries: np.ndarray, k: int, *, metric_type: int,
                    exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` FAISS scores and rows of ``queries`` among the rows of ``x`` not in ``exclude``.

    ``faiss.knn`` (blocked BLAS, no copy of ``x``) finds the top ``2k + 1``; the few queries left
    with fewer than ``k`` rows outside ``exclude`` are searched again, deeper. Scores are FAISS's:
    inner products (descending) or squared L2 (ascending).
    """
    import faiss

    skip = np.zeros(len(x), bool)
    if exclude is not None:
        skip[exclude] = True
    scores = np.empty((len(queries), k), np.float32)
    rows = np.empty((len(queries), k), np.int64)
    todo, want = np.arange(len(queries)), 2 * k + 1
    while len(todo):
        want = min(want, len(x))
        s, r = faiss.knn(queries[todo], x, want, metric=metric_type)
        keep = (r >= 0) & ~skip[np.maximum(r, 0)]
        done = (keep.sum(axis=1) >= k) | (want == len(x))
        first = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # the best k kept, in FAISS's order
        scores[todo[done]] = np.take_along_axis(s, first, axis=1)[done]
        rows[todo[done]] = np.take_along_axis(r, first, axis=1)[done]
        todo, want = todo[~done], 4 * want
    return scores, rows


def recall_per_query(found: np.ndarray, queries: np.ndarray, x: np.ndarray, kth: np.ndarray, *,
                     metric_type: int) -> np.ndarray:
    """Share of each query's ``k`` results whose exact score is at least as good as the k-th true score
    ``kth`` (a hit; -1 rows miss). Scoring the found rows exactly keeps lossy codes (PQ) honest."""
    import faiss

    k = found.shape[1]
    vec = x[np.maximum(found, 0)]  # (Q, k, D)
    if metric_type == faiss.METRIC_INNER_PRODUCT:
        score = np.einsum("qkd,qd->qk", vec, queries)
        hit = score >= kth[:, None] - 1e-5 * np.maximum(1.0, np.abs(kth[:, None]))
    else:
        score = ((vec - queries[:, None, :]) ** 2).sum(axis=2)
        hit = score <= kth[:, None] + 1e-5 * np.maximum(1.0, np.abs(kth[:, None]))
    return (hit & (found >= 0)).sum(axis=1) / k


def lower_bound(per_query: np.ndarray) -> float:
    """One-sided 99% lower confidence bound of the mean of ``per_query``."""
    if len(per_query) < 2:
        return float(per_query.mean()) if len(per_query) else 0.0
    return float(per_query.mean() - _Z99 * per_query.std(ddof=1) / math.sqrt(len(per_query)))


def smallest_reaching(measure: Callable[[int], np.ndarray], *, lo: int, hi: int,
                      target: float) -> tuple[int, dict[int, np.ndarray]]:
    """The smallest knob in ``lo..hi`` whose recalls (``measure(value)``, per query) reach ``target``.

    Doubles from ``lo`` until one reaches it, then bisects between the last miss and the first
    hit; assumes recall rises with the knob. When even ``hi`` misses, returns the smallest value
    within 0.005 of the best mean recall seen (a plateau: lossy codes cap recall at any knob).
    Returns the value and every value measured, in order.
    """
    seen: dict[int, np.ndarray] = {}

    def ok(value: int) -> bool:
        if value not in seen:
            seen[value] = measure(value)
        return lower_bound(seen[value]) >= target

    miss, value = lo - 1, lo
    while not ok(value):
        if value >= hi:
            best = max(float(r.mean()) for r in seen.values())
            return min(v for v, r in seen.items() if r.mean() >= best - _PLATEAU), seen
        miss, value = value, min(2 * value, hi)
    while value - miss > 1:
        mid = (miss + value) // 2
        if ok(mid):
            value = mid
        else:
            miss = mid
    return value, seen


def calibrate(search: Callable[[np.ndarray, int, int], np.ndarray], x: np.ndarray, held: np.ndarray, *, k: int,
              metric_type: int, knob: str, lo: int, hi: int, target: float, allowance: float = 0.0,
              explicit: int | None = None) -> Calibration:
    """Choose (or, with ``explicit``, only measure) ``knob`` in ``lo..hi`` on an index holding every
    row of ``x`` except ``held``: ``search(queries, k, value)`` returns the rows (Q, k) found with
    the knob at ``value``. ``x`` holds the vectors as indexed (normalised for cosine)."""
    start = time.perf_counter()
    queries = x[held]
    truth, _ = exact_neighbors(x, queries, k, metric_type=metric_type, exclude=held)
    kth = truth[:, -1]

    def measure(value: int) -> np.ndarray:
        return recall_per_query(search(queries, k, value), queries, x, kth, metric_type=metric_type)

    if explicit is None:
        value, seen = smallest_reaching(measure, lo=lo, hi=hi, target=target + allowance)
        chosen_by = "target"
    else:
        value, seen, chosen_by = explicit, {explicit: measure(explicit)}, "explicit"
    low = lower_bound(seen[value])
    return Calibration(knob=knob, value=int(value), chosen_by=chosen_by, target=float(target),
                       allowance=float(allowance), recall=round(float(seen[value].mean()), 4),
                       recall_low=round(low, 4), reached=low >= target + allowance,
                       k=int(k), queries=len(held), seconds=round(time.perf_counter() - start, 3),
                       sweep=tuple((int(v), round(float(r.mean()), 4), round(lower_bound(r), 4))
                                   for v, r in seen.items()))


def calibrate_kind(family: "IndexKind", index: "faiss.Index", x: np.ndarray, added: np.ndarray, held: np.ndarray,
                   *, metric_type: int, target: float, explicit: int | None) -> Calibration:
    """Calibrate ``family``'s knob on ``index``, which holds the rows ``added`` (in that order) and not
    ``held``; warn when the target is missed."""
    def search(queries: np.ndarray, k: int, value: int) -> np.ndarray:
        family.set_knob(index, value)
        found = index.search(queries, k)[1]
        return found if family.stores_row_ids else np.where(found >= 0, added[np.maximum(found, 0)], -1)

    k = min(K, len(x) - len(held))
    lo, hi = family.calibration_range(index, k)
    result = calibrate(search, x, held, k=k, metric_type=metric_type, knob=family.knob, lo=lo, hi=hi,
                       target=target, allowance=family.calibration_allowance, explicit=explicit)
    log.info("%s index: %s", family.name, result.summary())
    if not result.reached:
        fix = (f"drop `{family.knob}` to calibrate it, or pass recall=None" if explicit is not None else
               f"no {family.knob} up to {hi} reached it: {family.miss_hint}")
        log.warning("recall target not reached: %s; %s", result.summary(), fix)
    return result
