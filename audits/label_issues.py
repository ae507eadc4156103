"""Label issues by confident learning (Northcutt et al., "Confident Learning: Estimating Uncertainty
in Dataset Labels"), with cleanlab's contract (``cleanlab.filter.find_label_issues``).

N is the number of examples and K the number of classes. ``labels`` (N,) are the given (possibly
noisy) integer labels in [0, K); ``pred_probs`` (N, K) are **out-of-sample** predicted
probabilities (cross-validated or held out: in-sample probabilities hide issues), one row per
example, each row summing to 1. float16, float32 or float64, in memory or as ``np.memmap``.

``pred_probs`` is read in row chunks of about :data:`CHUNK_ELEMENTS` values, and only (N,)
vectors plus one chunk (or one class's rows, also chunked) are held at a time, so a memory-mapped
1M x 1000 matrix is audited in a few hundred MB besides the mapped file. float16 chunks are
widened to float32, so float16 input gives exactly the result of the same values in float32.

Algorithm (METHODS.md 3.4; default ``filter_by="prune_by_noise_rate"``):

1. per-class thresholds ``t_j`` = mean self-confidence ``P[i, j]`` over examples labelled j
   (floored at 2e-6; a class without examples gets 2, so it is never confident);
2. confident joint ``C[given][guess]``: example i counts under the class it is confident in
   (``P[i, j] >= t_j - 1e-6``), under its argmax when several, not at all when none; the diagonal
   is clipped to >= 1;
3. calibration: each row rescaled to its given-label count, the whole to N, rounded so that row
   totals are kept;
4. pruning: for given class k and each j != k, flag the ``C[k][j]`` examples labelled k with the
   largest margin ``P[i, j] - P[i, k]`` (after keeping ``min_examples_per_class`` per class and
   scaling the off-diagonals by ``frac_noise``);
5. unflag every example whose argmax, with its given class boosted by 1e-6, is its given label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np

logger = logging.getLogger(__name__)

FILTER_BY = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")
SCORE_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")

CHUNK_ELEMENTS = 1 << 20  # pred_probs values touched at once: 4 MB of float32, cache-friendly
ROW_SUM_ATOL = {np.dtype(np.float16): 1e-2}  # |row sum - 1| allowed; 1e-3 for float32/float64
_DEFAULT_ROW_SUM_ATOL = 1e-3
_THRESHOLD_FLOOR = 2e-6
_ABSENT_CLASS_THRESHOLD = 2.0  # above any probability: a class without examples is never confident
_CONFIDENT_SLACK = 1e-6
_GIVEN_BOOST = 1e-6
_CLIP = 1e-6  # floor for probabilities inside logs and for divisors in the entropy score


@dataclass(frozen=True, eq=False)
class LabelIssues:
    """Result of :func:`audit_labels`.

    ``mask`` (N,) bool: flagged examples (as :func:`find_label_issues`); ``scores`` (N,) label
    quality, lower = more suspicious; ``suggested_label`` (N,): the model's argmax for flagged rows
    and the given label elsewhere; ``ranking``: indices of flagged rows by ascending score;
    ``confident_joint`` (K, K) calibrated counts, rows = given label, columns = estimated true label.
    """

    mask: np.ndarray
    scores: np.ndarray
    suggested_label: np.ndarray
    ranking: np.ndarray
    confident_joint: np.ndarray
    num_issues: int
    filter_by: str
    method: str


@dataclass(frozen=True, eq=False)
class NoiseMatrices:
    """Estimates from the calibrated confident joint.

    ``joint`` (K, K): p(given = i, true = j), sums to 1; ``noise_matrix`` (K, K):
    p(given = i | true = j), columns sum to 1; ``inverse_noise_matrix`` (K, K):
    p(true = j | given = i), rows sum to 1; ``prior_true`` (K,): p(true = j).
    A class that never occurs gets an identity column / row.
    """

    joint: np.ndarray
    noise_matrix: np.ndarray
    inverse_noise_matrix: np.ndarray
    prior_true: np.ndarray


@dataclass(frozen=True, eq=False)
class _Scan:
    """Everything one chunked pass over ``pred_probs`` yields (floats in the work dtype, float32 or float64)."""

    self_confidence: np.ndarray  # (N,) P[i, labels[i]]
    argmax: np.ndarray  # (N,) int32
    row_max: np.ndarray  # (N,) P[i, argmax[i]]
    joint: np.ndarray  # (K, K) raw confident joint, diagonal clipped to >= 1
    off_diagonal: np.ndarray  # (N,) bool: counted off the diagonal of `joint`
    max_other: np.ndarray | None  # (N,) max_{j != labels[i]} P[i, j], when asked for
    entropy: np.ndarray | None  # (N,) entropy / log K, when asked for


# ---------------------------------------------------------------- validation


def _row_chunks(n: int, k: int) -> Iterator[slice]:
    """Row slices of about CHUNK_ELEMENTS values; depends on K only, so results never depend on dtype."""
    step = max(1, CHUNK_ELEMENTS // k)
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def _work_dtype(pred_probs: np.ndarray) -> np.dtype:
    return np.dtype(np.float64) if pred_probs.dtype == np.float64 else np.dtype(np.float32)


def _check_options(*, filter_by: str | None = None, frac_noise: float = 1.0, min_examples_per_class: int = 1,
                   method: str | None = None) -> None:
    if filter_by is not None and filter_by not in FILTER_BY:
        raise ValueError(f"`filter_by` must be one of {FILTER_BY}, got {filter_by!r}")
    if method is not None and method not in SCORE_METHODS:
        raise ValueError(f"`method` must be one of {SCORE_METHODS}, got {method!r}")
    if not 0.0 < frac_noise <= 1.0:
        raise ValueError(f"`frac_noise` must be in (0, 1], got {frac_noise}")
    if isinstance(min_examples_per_class, bool) or not isinstance(min_examples_per_class, (int, np.integer)) \
            or min_examples_per_class < 0:
        raise ValueError(f"`min_examples_per_class` must be an integer >= 0, got {min_examples_per_class!r}")


def _validate(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes, dtypes, label range and every row of ``pred_probs`` (chunked); return (labels, pred_probs)."""
    if not isinstance(pred_probs, np.ndarray):
        pred_probs = np.asarray(pred_probs)
    if pred_probs.dtype not in (np.float16, np.float32, np.float64):
        raise TypeError(f"`pred_probs` must be float16, float32 or float64 probabilities, got dtype {pred_probs.dtype}")
    if pred_probs.ndim != 2:
        raise ValueError(f"`pred_probs` must be 2-D (N examples, K classes), got shape {pred_probs.shape}")
    n, k = pred_probs.shape
    if k < 2:
        raise ValueError(f"`pred_probs` must have at least 2 classes (columns), got {k}")
    if n < 1:
        raise ValueError("`pred_probs` has no rows; pass at least one example")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"`labels` must be 1-D (N,), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"`labels` must hold integer class ids, got dtype {labels.dtype}")
    if len(labels) != n:
        raise ValueError(f"`pred_probs` has {n} rows but `labels` has {len(labels)}; pass one row per example")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= k:
        bad = int(np.flatnonzero((labels < 0) | (labels >= k))[0])
        raise ValueError(f"`labels` must lie in [0, {k}) (one `pred_probs` column per class), got values in "
                         f"[{lo}, {hi}], e.g. labels[{bad}] = {int(labels[bad])}")
    atol = ROW_SUM_ATOL.get(pred_probs.dtype, _DEFAULT_ROW_SUM_ATOL)
    for sl in _row_chunks(n, k):
        chunk = pred_probs[sl]
        sums = chunk.sum(axis=1, dtype=_work_dtype(pred_probs))  # NaN or inf anywhere in a row shows here
        low = chunk.min(axis=1)
        bad = np.flatnonzero(~np.isfinite(sums) | (low < 0) | (np.abs(sums - 1) > atol))
        if len(bad):
            i = int(bad[0])
            row = sl.start + i
            if not np.isfinite(sums[i]):
                raise ValueError(f"`pred_probs` must be finite, but row {row} holds NaN or inf")
            if low[i] < 0:
                raise ValueError(f"`pred_probs` must be >= 0, but row {row} has minimum {float(low[i]):.4g}; "
                                 "pass probabilities (softmax of the logits), not logits")
            raise ValueError(f"each row of `pred_probs` must sum to 1 (within {atol:g}), but row {row} sums to "
                             f"{float(sums[i]):.6g}; pass probabilities (softmax of the logits)")
    return labels.astype(np.int64, copy=False), pred_probs


# ---------------------------------------------------------------- the pass over pred_probs


def _thresholds(labels: np.ndarray, self_conf: np.ndarray, k: int) -> np.ndarray:
    """Per-class mean self-confidence (float64), floored; classes without examples get 2."""
    counts = np.bincount(labels, minlength=k)
    sums = np.bincount(labels, weights=self_conf, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(counts > 0, sums / counts, _ABSENT_CLASS_THRESHOLD)
    return np.maximum(t, _THRESHOLD_FLOOR)


def _at_least(threshold: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Smallest ``dtype`` values >= ``threshold`` (float64): ``x >= out`` iff ``x >= threshold`` for x in dtype."""
    out = threshold.astype(dtype)
    low = out.astype(np.float64) < threshold
    out[low] = np.nextafter(out[low], dtype.type(np.inf))
    return out


def _scan(labels: np.ndarray, pred_probs: np.ndarray, *, max_other: bool = False, entropy: bool = False) -> _Scan:
    """Self-confidence (a gather), then one chunked pass for argmax, the confident joint and optional extras.

    Per row, the classes with ``P[i, j] >= t_j - 1e-6`` are counted with one uint8 sum; a row with
    exactly one such class counts under it (its argmax when the argmax is confident, which is the
    common case, else the first confident column), a row with several under its argmax.
    """
    n, k = pred_probs.shape
    dtype = _work_dtype(pred_probs)
    self_conf = np.empty(n, dtype=dtype)
    for sl in _row_chunks(n, k):
        self_conf[sl] = pred_probs[sl][np.arange(sl.stop - sl.start), labels[sl]]
    cut = _at_least(_thresholds(labels, self_conf, k) - _CONFIDENT_SLACK, dtype)
    argmax = np.empty(n, dtype=np.int32)
    row_max = np.empty(n, dtype=dtype)
    off_diagonal = np.empty(n, dtype=bool)
    other = np.empty(n, dtype=dtype) if max_other else None
    ent = np.empty(n, dtype=dtype) if entropy else None
    joint = np.zeros(k * k, dtype=np.int64)
    for sl in _row_chunks(n, k):
        x = np.asarray(pred_probs[sl]).astype(dtype, copy=False)
        rows = np.arange(len(x))
        given = labels[sl]
        top = x.argmax(axis=1)
        argmax[sl] = top
        row_max[sl] = x[rows, top]
        confident = x >= cut
        n_conf = confident.view(np.uint8).sum(axis=1, dtype=np.int32 if k > 255 else np.uint8)
        guess = top.copy()
        single = np.flatnonzero((n_conf == 1) & ~confident[rows, top])
        guess[single] = confident[single].argmax(axis=1)
        counted = n_conf > 0
        joint += np.bincount(given[counted] * k + guess[counted], minlength=k * k)
        off_diagonal[sl] = counted & (guess != given)
        if ent is not None:
            clipped = np.maximum(x, _CLIP)
            ent[sl] = -(clipped * np.log(clipped)).sum(axis=1) / np.log(k)
        if other is not None:
            masked = x.copy()
            masked[rows, given] = -np.inf
            other[sl] = masked.max(axis=1)
    joint = joint.reshape(k, k)
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    return _Scan(self_confidence=self_conf, argmax=argmax, row_max=row_max, joint=joint, off_diagonal=off_diagonal,
                 max_other=other, entropy=ent)


def _scores(scan: _Scan, method: str) -> np.ndarray:
    s = scan.self_confidence
    if method == "self_confidence":
        return s.copy()
    if method == "normalized_margin":
        return (s - scan.max_other + 1) / 2
    # confidence-weighted entropy: x = entropy / self-confidence, mapped to (0, 1] by log(1 + x) / x
    x = scan.entropy / np.maximum(s, _CLIP)
    return np.log1p(x) / np.maximum(x, _CLIP)


def _agrees_with_given(scan: _Scan) -> np.ndarray:
    """Step 5: the argmax with the given class boosted by 1e-6 is the given class (ties count as agreeing)."""
    s = scan.self_confidence
    return s + s.dtype.type(_GIVEN_BOOST) >= scan.row_max


# ---------------------------------------------------------------- confident joint


def _round_rows(x: np.ndarray) -> np.ndarray:
    """Round to integers keeping each row's (rounded) total, by cleanlab's rule: round half to even,
    then move the rows still off their total by one on the largest (or smallest) remainders.

    Ties are broken by numpy's default argsort, as in cleanlab, so both give the same counts on
    the same machine (its SIMD sort is not stable, so the tie order is not fixed across CPUs).
    """
    k = x.shape[1]
    ints = np.rint(x)
    diff = (np.rint(x.sum(axis=1)) - ints.sum(axis=1)).astype(np.int64)
    order = np.argsort(x - ints, axis=1)  # ascending remainders
    rank_up = np.empty_like(order)  # rank among the largest remainders (0 = largest)
    np.put_along_axis(rank_up, order[:, ::-1], np.broadcast_to(np.arange(k), order.shape), axis=1)
    rank_down = np.empty_like(order)  # rank among the smallest remainders
    np.put_along_axis(rank_down, order, np.broadcast_to(np.arange(k), order.shape), axis=1)
    ints += rank_up < np.clip(diff, 0, k)[:, None]
    ints -= rank_down < np.clip(-diff, 0, k)[:, None]
    return ints.astype(np.int64)


def _calibrate(joint: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Rows rescaled to the given-label counts, the whole to N, rounded keeping row totals."""
    cal = joint / np.maximum(joint.sum(axis=1, keepdims=True), _CLIP) * counts[:, None]
    cal = cal / max(cal.sum(), _CLIP) * counts.sum()
    return _round_rows(cal)


# ---------------------------------------------------------------- pruning


def _prune_counts(joint: np.ndarray, *, min_examples_per_class: int, frac_noise: float) -> np.ndarray:
    """Counts to prune per (given k, true j), as cleanlab's ``prune_count_matrix`` (transposed).

    The diagonal of each given class is raised to ``min_examples_per_class``, taking the difference
    evenly from that row's non-zero off-diagonals; off-diagonals are then scaled by ``frac_noise``
    and the removed mass goes to the diagonal, so row totals stay; everything is floored.
    """
    diag = joint.diagonal().astype(np.float64)
    new_diag = np.maximum(diag, min_examples_per_class)
    nonzero_off = np.maximum(np.count_nonzero(joint, axis=1) - 1.0, 1.0)
    off = np.clip(joint - ((new_diag - diag) / nonzero_off)[:, None], 0, None)
    np.fill_diagonal(off, 0)
    out = np.floor(off * frac_noise)
    np.fill_diagonal(out, np.floor(new_diag + off.sum(axis=1) * (1 - frac_noise)))
    return out.astype(np.int64)


def _prune_by_class(labels: np.ndarray, self_conf: np.ndarray, to_flag: np.ndarray) -> np.ndarray:
    """Flag, in each given class k, its ``to_flag[k]`` examples of lowest self-confidence (one sort, no loop)."""
    order = np.lexsort((self_conf, labels))
    counts = np.bincount(labels, minlength=len(to_flag))
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - starts[labels[order]]
    return rank < to_flag[labels]


def _top_per_column(values: np.ndarray, ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the ``n`` largest values of every column (and their ids); unordered."""
    if len(values) <= n:
        return values, ids
    part = np.argpartition(-values, n - 1, axis=0)[:n]
    return np.take_along_axis(values, part, axis=0), np.take_along_axis(ids, part, axis=0)


def _column_groups(need: np.ndarray, cols: np.ndarray, *, one_chunk: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Columns to select from, with their counts: one group when the class fits in one chunk, else one
    group per power of two of the count, so a running top-n never keeps far more than a column needs."""
    if one_chunk:
        return [(cols, need[cols])]
    level = np.floor(np.log2(need[cols])).astype(np.int64)
    return [(cols[level == g], need[cols[level == g]]) for g in np.unique(level)]


def _prune_by_noise_rate(labels: np.ndarray, pred_probs: np.ndarray, self_conf: np.ndarray,
                         prune: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """For each given class k and j != k, flag the ``prune[k, j]`` examples labelled k with the largest
    margin ``P[i, j] - P[i, k]``.

    Loops over classes only: the rows of class k are gathered (in chunks when large) and each chunk
    updates a running top-n per needed column with one ``argpartition`` over rows and columns.
    """
    n, k = pred_probs.shape
    dtype = _work_dtype(pred_probs)
    counts = np.bincount(labels, minlength=k)
    by_class = np.argsort(labels, kind="stable")
    starts = np.cumsum(counts) - counts
    step = max(1, CHUNK_ELEMENTS // k)
    mask = np.zeros(n, dtype=bool)
    for cls in np.flatnonzero(eligible & (prune.sum(axis=1) > 0)):
        need = np.minimum(prune[cls], counts[cls])
        members = by_class[starts[cls]: starts[cls] + counts[cls]]
        groups = _column_groups(need, np.flatnonzero(need), one_chunk=len(members) <= step)
        kept = [(np.empty((0, len(c)), dtype=dtype), np.empty((0, len(c)), dtype=np.int64)) for c, _ in groups]
        for a in range(0, len(members), step):
            rows = members[a: a + step]
            own = self_conf[rows][:, None]
            for g, (gcols, gneed) in enumerate(groups):
                margin = np.asarray(pred_probs[np.ix_(rows, gcols)]).astype(dtype, copy=False) - own
                ids = np.broadcast_to(rows[:, None], margin.shape)
                if len(groups) == 1 and len(members) <= step:  # the whole class at once: rank it below
                    kept[g] = (margin, ids)
                    continue
                vals, idx = kept[g]
                kept[g] = _top_per_column(np.concatenate([vals, margin]), np.concatenate([idx, ids]),
                                          int(gneed.max()))
        for (gcols, gneed), (vals, idx) in zip(groups, kept):
            order = np.argsort(-vals, axis=0, kind="stable")
            ranked = np.take_along_axis(idx, order, axis=0)
            mask[ranked[np.arange(len(ranked))[:, None] < gneed[None, :]]] = True
    return mask


def _find_impl(labels: np.ndarray, pred_probs: np.ndarray, scan: _Scan, *, filter_by: str,
               frac_noise: float, min_examples_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """(mask, calibrated confident joint) on valid input."""
    k = pred_probs.shape[1]
    counts = np.bincount(labels, minlength=k)
    joint = _calibrate(scan.joint, counts)
    if filter_by == "confident_learning":
        mask = scan.off_diagonal.copy()
    elif filter_by == "predicted_neq_given":
        mask = scan.argmax != labels
    else:
        prune = _prune_counts(joint, min_examples_per_class=min_examples_per_class, frac_noise=frac_noise)
        eligible = counts > min_examples_per_class
        if not eligible[counts > 0].all():
            logger.warning("classes %s have <= %d examples (`min_examples_per_class`); none of them is flagged",
                           np.flatnonzero(~eligible & (counts > 0)).tolist(), min_examples_per_class)
        mask = np.ones(len(labels), dtype=bool)
        if filter_by in ("prune_by_class", "both"):
            to_flag = np.where(eligible, np.maximum(counts - prune.diagonal(), 0), 0)
            mask &= _prune_by_class(labels, scan.self_confidence, to_flag)
        if filter_by in ("prune_by_noise_rate", "both"):
            off = prune.copy()
            np.fill_diagonal(off, 0)
            mask &= _prune_by_noise_rate(labels, pred_probs, scan.self_confidence, off, eligible)
    return mask & ~_agrees_with_given(scan), joint


# ---------------------------------------------------------------- public API


def confident_joint(labels: np.ndarray, pred_probs: np.ndarray, *, calibrate: bool = True) -> np.ndarray:
    """(K, K) int64 counts: rows = given label, columns = estimated true label.

    ``calibrate=True`` rescales rows to the given-label counts and the total to N (METHODS.md 3.4 step 3).
    """
    labels, pred_probs = _validate(labels, pred_probs)
    raw = _scan(labels, pred_probs).joint
    return _calibrate(raw, np.bincount(labels, minlength=pred_probs.shape[1])) if calibrate else raw


def estimate_noise_matrices(labels: np.ndarray, pred_probs: np.ndarray) -> NoiseMatrices:
    """Joint, noise and inverse noise matrices and the true-class prior from the calibrated confident joint."""
    joint = confident_joint(labels, pred_probs).astype(np.float64)
    joint /= joint.sum()
    prior_true = joint.sum(axis=0)
    given_prior = joint.sum(axis=1)
    eye = np.eye(len(joint))
    with np.errstate(invalid="ignore", divide="ignore"):
        noise = np.where(prior_true[None, :] > 0, joint / prior_true[None, :], eye)
        inverse = np.where(given_prior[:, None] > 0, joint / given_prior[:, None], eye)
    return NoiseMatrices(joint=joint, noise_matrix=noise, inverse_noise_matrix=inverse, prior_true=prior_true)


def find_label_issues(labels: np.ndarray, pred_probs: np.ndarray, *, filter_by: str = "prune_by_noise_rate",
                      frac_noise: float = 1.0, min_examples_per_class: int = 1) -> np.ndarray:
    """(N,) bool mask of likely label issues (cleanlab's ``find_label_issues`` contract).

    ``filter_by``: ``prune_by_noise_rate`` (default; largest margins per confident-joint cell),
    ``prune_by_class`` (lowest self-confidence per given class), ``both`` (flagged by both),
    ``confident_learning`` (the off-diagonal examples of the confident joint) or
    ``predicted_neq_given`` (argmax differs from the label). ``frac_noise`` (0, 1] flags only
    that fraction of the estimated issues (prune modes); ``min_examples_per_class`` are never
    pruned from a class. No flagged example has its given label as the argmax.
    """
    _check_options(filter_by=filter_by, frac_noise=frac_noise, min_examples_per_class=min_examples_per_class)
    labels, pred_probs = _validate(labels, pred_probs)
    mask, _ = _find_impl(labels, pred_probs, _scan(labels, pred_probs), filter_by=filter_by,
                         frac_noise=frac_noise, min_examples_per_class=min_examples_per_class)
    return mask


def label_quality_scores(labels: np.ndarray, pred_probs: np.ndarray, *, method: str = "self_confidence") -> np.ndarray:
    """(N,) label quality in [0, 1]; lower = more likely mislabelled.

    ``self_confidence``: ``P[i, label]``; ``normalized_margin``: ``(P[i, label] - max_{j != label}
    P[i, j] + 1) / 2``; ``confidence_weighted_entropy``: with ``x = H(P_i) / P[i, label]`` (entropy
    normalised by log K, probabilities floored at 1e-6), ``log(1 + x) / x``.
    """
    _check_options(method=method)
    labels, pred_probs = _validate(labels, pred_probs)
    return _scores(_scan_for(labels, pred_probs, method), method)


def _scan_for(labels: np.ndarray, pred_probs: np.ndarray, method: str) -> _Scan:
    return _scan(labels, pred_probs, max_other=method == "normalized_margin",
                 entropy=method == "confidence_weighted_entropy")


def audit_labels(labels: np.ndarray, pred_probs: np.ndarray, *, filter_by: str = "prune_by_noise_rate",
                 method: str = "self_confidence", frac_noise: float = 1.0,
                 min_examples_per_class: int = 1) -> LabelIssues:
    """Mask, scores, suggested labels and ranking from one validation and one scan of ``pred_probs``."""
    _check_options(filter_by=filter_by, frac_noise=frac_noise, min_examples_per_class=min_examples_per_class,
                   method=method)
    labels, pred_probs = _validate(labels, pred_probs)
    scan = _scan_for(labels, pred_probs, method)
    mask, joint = _find_impl(labels, pred_probs, scan, filter_by=filter_by, frac_noise=frac_noise,
                             min_examples_per_class=min_examples_per_class)
    scores = _scores(scan, method)
    flagged = np.flatnonzero(mask)
    ranking = flagged[np.argsort(scores[flagged], kind="stable")]
    suggested = np.where(mask, scan.argmax, labels)
    return LabelIssues(mask=mask, scores=scores, suggested_label=suggested, ranking=ranking, confident_joint=joint,
                       num_issues=int(mask.sum()), filter_by=filter_by, method=method)
