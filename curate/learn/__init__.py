"""Training, prediction and embedding: the one training loop and the model batch functions.

``fit`` trains any curate model on a :class:`TrainData`; ``PredictFn`` and ``EmbedFn`` are
the batch functions every executor runs; ``cross_val_pred_probs`` (cross-trained models) and
``cross_val_probe`` (a linear or k-NN probe on embeddings) give out-of-fold probabilities for audits.
"""

from curate.learn.augment import Augment
from curate.learn.crossval import cross_val_pred_probs, stratified_folds
from curate.learn.data import ArrayData, TrainData
from curate.learn.device import resolve_device
from curate.learn.embed import EmbedFn, embed, embed_images
from curate.learn.fit import FitResult, fit, learning_rate
from curate.learn.mixing import MIXERS, Mixer, create_mixer
from curate.learn.predict import PredictFn, predict, predict_images
from curate.learn.probe import PROBES, KnnProbe, LinearProbe, Probe, create_probe, cross_val_probe

__all__ = [
    "MIXERS",
    "PROBES",
    "ArrayData",
    "Augment",
    "EmbedFn",
    "FitResult",
    "KnnProbe",
    "LinearProbe",
    "Mixer",
    "PredictFn",
    "Probe",
    "TrainData",
    "create_mixer",
    "create_probe",
    "cross_val_pred_probs",
    "cross_val_probe",
    "embed",
    "embed_images",
    "fit",
    "learning_rate",
    "predict",
    "predict_images",
    "resolve_device",
    "stratified_folds",
]
