"""ReaL accuracy ("Are we done with ImageNet?", Beyer et al. 2020): top-k scored against the
reassessed label sets instead of the original single labels."""

from __future__ import annotations

import numpy as np

from audits.label_sets import LabelSets, as_predictions, hits_per_row, label_sets_csr


def real_accuracy(predictions: np.ndarray, real_labels: LabelSets) -> float:
    """ReaL accuracy (Beyer et al. 2020): mean of ``prediction in set`` over images with a non-empty set.

    ``predictions`` (N,) gives top-1; (N, k) ranked classes give top-k (any of the k in the set).
    Empty sets leave both numerator and denominator, as in ReaL and timm's ``real_labels``.
    """
    pred = as_predictions(predictions)
    flat, rows, sizes = label_sets_csr(real_labels, len(pred), "real_labels")
    rated = sizes > 0
    if not rated.any():
        raise ValueError("every label set in `real_labels` is empty; ReaL accuracy needs at least one labelled image")
    return float((hits_per_row(pred, flat, rows) > 0)[rated].mean())
