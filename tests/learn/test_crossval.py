"""Out-of-fold probabilities: every row predicted once, by a model that never trained on it."""

import numpy as np
import pytest
import torch
from torch import nn

from curate.errors import UsageError
from curate.learn import cross_val_pred_probs, stratified_folds
from curate.learn.data import ArrayData
from curate.learn.fit import fit
from curate.learn.predict import predict_images
from curate.models import Preprocess

IDENTITY = Preprocess(mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3, size=(2, 2))  # float pixels = uint8 values


class FoldSpy(nn.Module):
    """Reads a sample's id from its pixels; records ids seen in training and in prediction; predicts its fold."""

    def __init__(self, fold: int, num_classes: int):
        super().__init__()
        self.fold, self.num_classes, self.preprocess = fold, num_classes, IDENTITY
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.trained, self.predicted = set(), []

    def forward(self, x):
        ids = x[:, 0, 0, 0].round().long().tolist()
        self.trained.update(ids) if self.training else self.predicted.extend(ids)
        return self.bias * 0 + 10.0 * nn.functional.one_hot(torch.full((len(x),), self.fold), self.num_classes)


def test_every_row_is_predicted_exactly_once_by_the_model_of_its_held_out_fold():
    n, k, folds = 30, 3, 3
    labels = np.arange(n) % k
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 2, 2, 3)).copy()
    spies, augmented = [], []

    def augment(batch, generator):
        augmented.append(len(batch))
        return batch

    def make_model(fold):
        spies.append(FoldSpy(fold, folds))
        return spies[-1]

    probs = cross_val_pred_probs(make_model, images, labels, folds=folds, device="cpu", progress=False,
                                 fit_kwargs=dict(epochs=1, batch_size=8, augment=augment))
    fold_of = stratified_folds(labels, folds=folds, seed=0)
    np.testing.assert_array_equal(probs.argmax(1), fold_of)  # row i came from model fold_of[i]
    predicted = np.concatenate([spy.predicted for spy in spies])
    np.testing.assert_array_equal(np.sort(predicted), np.arange(n))  # each row once
    for spy in spies:
        assert spy.trained.isdisjoint(spy.predicted)
        assert spy.trained | set(spy.predicted) == set(range(n))
    assert sum(augmented) == (folds - 1) * n  # `augment` in fit_kwargs reaches every fold's training batches


class Memorizer(nn.Module):
    """A linear model on raw pixels with more inputs than samples: it can memorize random labels."""

    def __init__(self, num_classes: int, side: int):
        super().__init__()
        self.num_classes = num_classes
        self.preprocess = Preprocess(mean=(0.5,) * 3, std=(0.25,) * 3, size=(side, side))
        self.linear = nn.Linear(3 * side * side, num_classes)

    def forward(self, x):
        return self.linear(x.flatten(1))


def test_a_memorizing_model_scores_chance_out_of_fold_but_perfect_in_fold():
    rng = np.random.default_rng(0)
    n, k, side = 96, 4, 6
    images = rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)
    labels = rng.permutation(np.arange(n) % k)  # random labels: nothing to generalize
    fit_kwargs = dict(epochs=20, batch_size=96, lr=0.05, optimizer="adamw", weight_decay=0.0)

    def make(fold):
        with torch.random.fork_rng():  # a repeatable init that leaves the caller's RNG alone
            torch.manual_seed(fold)
            return Memorizer(k, side)

    in_fold = fit(make(0), ArrayData(images, labels), device="cpu", progress=False, **fit_kwargs).model
    in_fold_accuracy = (predict_images(in_fold, images, device="cpu").argmax(1) == labels).mean()
    out_of_fold = cross_val_pred_probs(make, images, labels, folds=4, fit_kwargs=fit_kwargs, device="cpu",
                                       progress=False)
    out_of_fold_accuracy = (out_of_fold.argmax(1) == labels).mean()
    assert in_fold_accuracy == 1.0
    assert out_of_fold_accuracy < 0.45  # chance is 0.25; an in-fold leak would push it to 1.0


def test_folds_are_stratified_balanced_and_seeded():
    labels = np.repeat(np.arange(4), [10, 13, 7, 30])
    fold_of = stratified_folds(labels, folds=5, seed=3)
    per_class = np.array([np.bincount(fold_of[labels == c], minlength=5) for c in range(4)])
    assert (per_class.max(1) - per_class.min(1) <= 1).all()
    sizes = np.bincount(fold_of)
    assert sizes.max() - sizes.min() <= 1
    np.testing.assert_array_equal(fold_of, stratified_folds(labels, folds=5, seed=3))
    assert not np.array_equal(fold_of, stratified_folds(labels, folds=5, seed=4))


@pytest.mark.parametrize(
    "folds, fit_kwargs, message",
    [
        (1, {}, "`folds` must be an integer from 2 to the smallest class count"),
        (4, {}, r"smallest class count \(3, class 1\)"),
        (2, {"seed": 1}, "`fit_kwargs` may not set seed"),
    ],
)
def test_bad_folds_and_reserved_fit_kwargs_are_usage_errors(folds, fit_kwargs, message):
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    images = np.zeros((len(labels), 2, 2, 3), np.uint8)
    with pytest.raises(UsageError, match=message):
        cross_val_pred_probs(lambda f: None, images, labels, folds=folds, fit_kwargs={"epochs": 1, **fit_kwargs})
