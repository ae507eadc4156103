"""curate.stats: the Student-t 95% interval of a mean over runs, by hand."""

import math

import pytest

from curate import stats
from curate.condense import protocol


def test_two_runs_use_t_with_one_degree_of_freedom_and_many_runs_approach_the_normal():
    out = stats.summarize([0.40, 0.46])
    sd = math.sqrt(2 * 0.03 ** 2)  # deviations +-0.03, n - 1 = 1
    assert out["mean"] == pytest.approx(0.43) and out["std"] == pytest.approx(sd)
    assert out["ci95"] == pytest.approx(12.706 * sd / math.sqrt(2))
    many = stats.summarize([0.0, 1.0] * 20)  # 40 runs: beyond the table, t(0.975, 39) = 2.0227
    assert many["ci95"] == pytest.approx(2.0227 * many["std"] / math.sqrt(40), rel=1e-4)


def test_condense_protocol_uses_the_same_functions():
    assert protocol.summarize is stats.summarize and protocol.t_quantile_975 is stats.t_quantile_975
