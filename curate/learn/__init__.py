"""Training, prediction and embedding: the one training loop and the model batch functions.

``fit`` trains any curate model on a :class:`TrainData`; ``PredictFn`` and ``EmbedFn`` are
the batch functions every executor runs; ``cross_val_pred_probs`` gives out-of-fold
probabilities for audits.
"""

from curate.learn.augment import Augment
from curate.learn.crossval import cross_val_pred_probs, stratified_folds
from curate.learn.data import ArrayData, TrainData
from curate.learn.device import resolve_device
from curate.learn.embed import EmbedFn, embed
from curate.learn.fit import FitResult, fit, learning_rate
from curate.learn.mixing import MIXERS, Mixer, create_mixer
from curate.learn.predict import PredictFn, predict, predict_images

__all__ = [
    "MIXERS",
    "ArrayData",
    "Augment",
    "EmbedFn",
    "FitResult",
    "Mixer",
    "PredictFn",
    "TrainData",
    "create_mixer",
    "cross_val_pred_probs",
    "embed",
    "fit",
    "learning_rate",
    "predict",
    "predict_images",
    "resolve_device",
    "stratified_folds",
]
