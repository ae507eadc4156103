"""Recall calibration: approximate kinds pick the smallest knob reaching the target, measured honestly."""

import json
import logging
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.errors import UsageError
from curate.index import build_index, load_index, sidecar_path
from curate.index.calibrate import exact_neighbors, lower_bound, smallest_reaching

KNOB = {"hnsw": "ef_search", "ivf": "nprobe"}


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def fresh_recall(index, e: np.ndarray, queries: np.ndarray) -> float:
    """recall@10 of ``index`` on queries it never held, against exact search."""
    _, truth = build_index(e, kind="flat").search_rows(queries, 10)
    return recall(index.search_rows(queries, 10)[1], truth)


@pytest.fixture(scope="module")
def overlapping(clustered):
    """4,000 stored points in 5 wide, overlapping clusters (32-d) and 500 unseen queries: hard enough that
    the fastest knob values miss 0.95."""
    points = clustered(4500, 32, clusters=5, spread=1.0, seed=7)
    return points[:4000], points[4000:]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_calibrated_knob_reaches_the_target_on_unseen_queries(overlapping, kind):
    """The chosen knob reaches recall 0.95 on the held rows (lower bound) and on queries the index never saw,
    and is not simply the largest (exhaustive) setting."""
    e, q = overlapping
    options = {"nlist": 64} if kind == "ivf" else {}
    index = build_index(e, kind=kind, recall=0.95, **options)
    cal = index.calibration
    assert (cal.knob, cal.chosen_by, cal.target, cal.k, cal.queries) == (KNOB[kind], "target", 0.95, 10, 200)
    assert cal.reached and cal.recall_low >= 0.95 and cal.recall >= cal.recall_low
    assert getattr(index, cal.knob) == cal.value == index.params[cal.knob]
    assert cal.sweep[0][1] < 0.95  # the fastest setting misses: the sweep had something to choose
    assert cal.value < (64 if kind == "ivf" else 2048) / 2
    assert fresh_recall(index, e, q) >= 0.94
    assert cal.seconds > 0


def test_calibration_queries_are_new_to_the_index(clustered):
    """The recall calibration reports is the recall of unseen queries, not of stored vectors searched in a
    graph that links them (which reads ~0.09 higher here): the held rows are added after calibrating."""
    points = clustered(3400, 32, clusters=5, spread=1.0, seed=2)
    e, q = points[:3000], points[3000:]
    index = build_index(e, kind="hnsw", hnsw_m=8, ef_search=16)
    flat = build_index(e, kind="flat")
    fresh = fresh_recall(index, e, q)
    rows = np.arange(0, 3000, 10)
    stored = recall(index.neighbors_of_rows(rows, 10)[1], flat.neighbors_of_rows(rows, 10)[1])
    assert stored - fresh > 0.05  # the two really differ on this data
    assert abs(index.calibration.recall - fresh) < 0.04


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_the_chosen_value_is_the_smallest_reaching_the_target_and_recall_rises(overlapping, kind):
    """Every smaller value measured misses the target plus the kind's allowance (by its 99% lower bound),
    the value just below the chosen one was measured, and recall rises with the knob (strictly
    non-decreasing for IVF, whose codes are exact)."""
    e, _ = overlapping
    options = {"nlist": 64} if kind == "ivf" else {}
    cal = build_index(e, kind=kind, recall=0.95, **options).calibration
    lows = {value: low for value, _, low in cal.sweep}
    bar = 0.95 + cal.allowance  # HNSW asks a little more: its delivered graph differs from the calibrated one
    assert cal.allowance == (0.005 if kind == "hnsw" else 0.0)
    assert lows[cal.value] >= bar and lows[cal.value - 1] < bar
    assert all(low < bar for value, low in lows.items() if value < cal.value)
    by_value = [r for _, r, _ in sorted(cal.sweep)]
    slack = 0.0 if kind == "ivf" else 0.01  # a graph search may lose a neighbour with more candidates
    assert all(b >= a - slack for a, b in zip(by_value, by_value[1:]))
    assert len(cal.sweep) <= 2 * math.ceil(math.log2(2048)) + 1  # doubling, then bisection


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_exact_neighbors_skip_the_excluded_rows(clustered, metric):
    """The truth is exact search over the rows the index held: a 10% sample is left out, as in calibration."""
    import faiss

    metric_type = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    x = clustered(3000, 16, clusters=3, spread=1.0, seed=1)
    held = np.sort(np.random.default_rng(0).choice(3000, 300, replace=False))
    rest = np.setdiff1d(np.arange(3000), held)
    scores, rows = exact_neighbors(x, x[held], 10, metric_type=metric_type, exclude=held)
    ref_scores, ref_rows = faiss.knn(x[held], x[rest], 10, metric=metric_type)
    np.testing.assert_array_equal(rows, rest[ref_rows])
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)


@settings(max_examples=60, deadline=None)
@given(curve=st.lists(st.floats(0, 1), min_size=1, max_size=80).map(sorted), lo=st.integers(1, 20),
       target=st.floats(0.05, 1.0), noise=st.floats(0, 0.1))
def test_smallest_reaching_matches_a_linear_scan(curve, lo, target, noise):
    """On any rising recall curve the sweep returns exactly what scanning every value would: the smallest
    value whose lower bound reaches the target, or (none reaching it) the first within 0.005 of the best."""
    pattern = noise * np.array([1.0, -1.0] * 50)  # per-query spread: the bound sits below the mean
    hi = lo + len(curve) - 1

    def measure(value: int) -> np.ndarray:
        return curve[value - lo] + pattern

    value, seen = smallest_reaching(measure, lo=lo, hi=hi, target=target)
    reaching = [v for v in range(lo, hi + 1) if lower_bound(measure(v)) >= target]
    if reaching:
        assert value == reaching[0]
    else:
        assert hi in seen and seen[value].mean() >= max(r.mean() for r in seen.values()) - 0.005
    assert len(seen) <= 2 * math.ceil(math.log2(len(curve) + 1)) + 1


def test_an_unreachable_target_is_reported_not_hidden(clustered, caplog):
    """IVF-PQ's lossy codes (4 bytes for 32 dims) cap recall below 0.99 at every nprobe: the sweep goes to
    nprobe = nlist, keeps the smallest setting on the plateau, and says so in a warning and the record."""
    e = clustered(3000, 32, clusters=10, spread=1.0, seed=3)
    with caplog.at_level(logging.WARNING, logger="curate.index.calibrate"):
        index = build_index(e, kind="ivfpq", nlist=16, m_pq=4, train_size=3000, recall=0.99,
                            calibration_queries=100)
    cal = index.calibration
    assert not cal.reached and cal.recall_low < 0.99 and cal.queries == 100
    assert max(value for value, _, _ in cal.sweep) == 16  # it tried the exhaustive setting
    assert index.nprobe == cal.value <= 16
    assert "recall target not reached" in caplog.text and "MISSES the target 0.99" in caplog.text


def test_an_explicit_knob_wins_and_its_recall_is_still_measured(overlapping, caplog):
    e, q = overlapping
    with caplog.at_level(logging.WARNING, logger="curate.index.calibrate"):
        index = build_index(e, kind="hnsw", ef_search=10, recall=0.999)
    cal = index.calibration
    assert index.ef_search == 10 and (cal.chosen_by, cal.value) == ("explicit", 10)
    assert [v for v, _, _ in cal.sweep] == [10] and not cal.reached
    assert abs(cal.recall - fresh_recall(index, e, q)) < 0.04
    assert "drop `ef_search` to calibrate it" in caplog.text


def test_recall_none_keeps_manual_control(overlapping, tmp_path):
    """No target: no calibration, the knobs' fixed defaults (or the caller's values), a null record."""
    e, _ = overlapping
    index = build_index(e, kind="hnsw", recall=None)
    assert index.calibration is None and index.ef_search == 64
    assert build_index(e, kind="ivf", nlist=32, recall=None).nprobe == 8
    assert build_index(e, kind="hnsw", ef_search=20, recall=None).ef_search == 20
    index.save(tmp_path / "manual.faiss")
    assert json.loads(sidecar_path(tmp_path / "manual.faiss").read_text())["calibration"] is None


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_the_chosen_value_is_saved_and_a_reload_searches_the_same_way(overlapping, tmp_path, kind):
    e, q = overlapping
    index = build_index(e, kind=kind, ids=[f"s{i}" for i in range(len(e))])
    index.save(tmp_path / "x.faiss")
    side = json.loads(sidecar_path(tmp_path / "x.faiss").read_text())
    knob = KNOB[kind]
    assert side["calibration"]["value"] == side["params"][knob] == index.calibration.value
    assert side["calibration"]["knob"] == knob and side["calibration"]["target"] == 0.95
    loaded = load_index(tmp_path / "x.faiss")
    assert getattr(loaded, knob) == index.calibration.value and loaded.calibration == index.calibration
    for a, b in zip(index.search(q, 10), loaded.search(q, 10)):
        np.testing.assert_array_equal(a, b)


def test_held_rows_are_stored_at_their_own_ids(overlapping):
    """Calibration adds the held rows last; FAISS id i must still hold row i (HNSW renumbers, IVF stores ids)."""
    e, _ = overlapping
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    for kind in ("hnsw", "ivf"):
        index = build_index(e, kind=kind)
        np.testing.assert_allclose(index.vectors(np.arange(len(e))), unit, atol=1e-6)
        _, nearest = index.search_rows(e[:300], 1)
        assert (nearest[:, 0] == np.arange(300)).mean() >= 0.99


@pytest.mark.parametrize(("options", "message"), [
    ({"recall": 0}, r"`recall` must be a recall@10 target in \(0, 1\]"),
    ({"recall": True}, "`recall` must be a recall@10 target"),
    ({"calibration_queries": 0}, "`calibration_queries` must be an integer >= 1"),
])
def test_bad_recall_options_fail_with_the_rule(overlapping, options, message):
    with pytest.raises(UsageError, match=message):
        build_index(overlapping[0], kind="hnsw", **options)
