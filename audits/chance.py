"""Whether ``pred_probs`` carry any signal about the labels, before an audit trusts them.

Confident learning flags the rows whose given label the ``pred_probs (N, K)`` contradict. When the
probabilities are no better than a guess (a new, untrained head; a probe on an embedding that
knows nothing of these classes) the flags are noise, yet they look just like real findings. The
check compares the out-of-sample accuracy of ``pred_probs`` against the given labels with two
guesses: uniform chance 1/K and always answering the most common given label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHANCE_MARGIN = 0.05
"""Accuracy within this many points of 1/K counts as chance (widened to two binomial standard errors
of chance accuracy when N is small, where a random guesser strays further)."""


@dataclass(frozen=True)
class ChanceCheck:
    """``accuracy`` of argmax(pred_probs) against the given labels and the two guesses it must beat:
    ``near_chance`` when it is below ``chance`` (1/K) + ``margin`` or not above ``majority_share``."""

    accuracy: float
    chance: float
    majority_share: float
    margin: float
    near_chance: bool

    def message(self) -> str:
        return (f"pred_probs are near chance: accuracy {self.accuracy:.1%} against the given labels, chance (1/K) "
                f"{self.chance:.1%}, majority-class guess {self.majority_share:.1%}; the flagged issues are noise. "
                "Use pred_probs from a trained model, `predict` with `folds`, or a probe over a better embedding")

    def metrics(self) -> dict[str, float | bool]:
        return {"pred_probs_near_chance": self.near_chance, "chance_accuracy": round(self.chance, 4),
                "majority_share": round(self.majority_share, 4), "chance_margin": round(self.margin, 4)}


def check_chance(labels: np.ndarray, pred_probs: np.ndarray, *, margin: float = CHANCE_MARGIN) -> ChanceCheck:
    """Compare the accuracy of ``pred_probs`` (N, K) on ``labels`` (N,) with 1/K and the majority share."""
    labels = np.asarray(labels)
    n, k = pred_probs.shape
    if n == 0 or len(labels) != n:
        raise ValueError(f"`labels` has {len(labels)} rows but `pred_probs` has {n}; pass one label per row")
    accuracy = float((np.asarray(pred_probs).argmax(1) == labels).mean())
    chance = 1.0 / k
    majority = float(np.bincount(labels, minlength=k).max() / n)
    wide = max(margin, 2.0 * float(np.sqrt(chance * (1 - chance) / n)))
    near = accuracy < chance + wide or accuracy <= majority
    return ChanceCheck(accuracy=accuracy, chance=chance, majority_share=majority, margin=wide, near_chance=near)
