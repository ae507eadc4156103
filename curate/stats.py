"""Means with 95% confidence intervals over repeated runs (seeds): the one place they are computed.

The interval is the Student-t one of the mean, ``t(0.975, n - 1) * s / sqrt(n)`` with the
sample standard deviation ``s``: with the 2 to 5 runs a CPU affords, the normal 1.96 would
understate it (by 2.2x at 3 runs, 6.5x at 2).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from curate.errors import UsageError

# two-sided 95% Student-t quantiles t(0.975, df) for df = 1..30
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """t(0.975, df): tabulated up to 30, a Cornish-Fisher expansion around 1.96 beyond (error < 1e-4)."""
    if df < 1:
        raise UsageError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def summarize(accuracies: Sequence[float]) -> dict[str, Any]:
    """``{"mean", "std", "ci95", "runs"}``; with a single run std is 0 and ci95 is None (undefined)."""
    runs = [float(a) for a in accuracies]
    if not runs:
        raise UsageError("no accuracies to summarize")
    n = len(runs)
    mean = float(np.mean(runs))
    std = float(np.std(runs, ddof=1)) if n > 1 else 0.0
    ci95 = t_quantile_975(n - 1) * std / math.sqrt(n) if n > 1 else None
    return {"mean": mean, "std": std, "ci95": ci95, "runs": runs}
