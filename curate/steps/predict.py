"""`predict`: class probabilities (pred_probs) of a table's rows, from a model or from a probe on embeddings.

Three routes: a trained model's held-out probabilities (its head must be trained for the table's
classes, else the step refuses: a new head's probabilities are noise); ``folds: K``, out-of-fold
probabilities by K-fold cross-training of a registry model; and ``probe: linear | knn``,
out-of-fold probabilities of a probe cross-validated on an `embed` step's vectors (seconds).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from curate.config import ConfigValueError, option
from curate.data.table import class_names_of, split_indices
from curate.errors import UsageError
from curate.steps.base import Role, Step, StepContext
from curate.steps.options import (ExecutorOptions, FitOptions, ModelOptions, build_model, check_class_names,
                                  require_one_model, require_trained_head)

log = logging.getLogger(__name__)

PROBE_FOLDS = 5
"""Folds of a probe when `folds` is null."""


@dataclass(frozen=True, kw_only=True)
class PredictConfig(ModelOptions, ExecutorOptions):
    split: str | None = option(None, help="rows to predict (null: all; with a probe: the embedded rows)")
    batch_size: int = option(256, gt=0)
    probe: Literal["linear", "knn"] | None = option(
        None, help="out-of-fold pred_probs of a probe cross-validated on `inputs.embeddings` (instead of a model)")
    folds: int | None = option(None, ge=0, help=f"K >= 2: out-of-fold pred_probs (cross-training `model`, or the "
                                                f"probe's folds); null: 0 (off) for a model, {PROBE_FOLDS} for a probe")
    l2: float = option(100.0, gt=0, help="linear probe: L2 penalty on the summed loss (scikit-learn's C = 1/l2)")
    knn_k: int = option(20, gt=0, help="knn probe: neighbours that vote")
    knn_temperature: float = option(0.07, gt=0, help="knn probe: votes weigh softmax(cosine / temperature)")
    train: FitOptions = option(default_factory=FitOptions, help="how each fold's model is trained (folds only)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.folds == 1:
            raise ConfigValueError("folds", "expected 0 (off) or at least 2, got 1")
        if self.probe and self.folds == 0:
            raise ConfigValueError("folds", f"a probe needs at least 2 folds (null: {PROBE_FOLDS}), got 0")

    @property
    def num_folds(self) -> int:
        if self.folds is None:
            return PROBE_FOLDS if self.probe else 0
        return self.folds


class PredictStep(Step):
    summary = ("Predict class probabilities (pred_probs) with a model; `folds: K` gives out-of-fold predictions; "
               "`probe: linear|knn` cross-validates a probe on an embed step's vectors")
    version = 2
    Config = PredictConfig
    inputs = {
        "data": Role(("table",), help="the table version to predict on"),
        "model": Role(("model",), optional=True, help="a trained model (instead of with.model)"),
        "embeddings": Role(("embeddings",), optional=True, help="an embed step's vectors (with `probe` only)"),
    }
    produces = ("pred_probs",)

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        if metrics.get("folds"):
            return f"out-of-fold accuracy {metrics['accuracy']:.2%} ({metrics['folds']} folds, {metrics['rows']:,} rows)"
        return f"accuracy {metrics['accuracy']:.2%} on {metrics['rows']:,} rows"

    @classmethod
    def check(cls, config: PredictConfig, wired):
        if config.probe:
            problems = []
            if config.model or config.model_config:
                problems.append(("model", "a probe reads `inputs.embeddings`, not a model; drop `with.model` "
                                          "(choose the model in the embed step)"))
            if "model" in wired:
                problems.append(("inputs.model", "a probe reads `inputs.embeddings`, not a model; drop "
                                                 "`inputs.model` (wire it to the embed step instead)"))
            if "embeddings" not in wired:
                problems.append(("inputs.embeddings", f"`probe: {config.probe}` needs `inputs.embeddings`: wire an "
                                                      "embed step of this table"))
            return problems
        if "embeddings" in wired:
            return [("inputs.embeddings", "only a probe reads `inputs.embeddings`; set `probe: linear` (or knn), "
                                          "or drop the input")]
        problems = require_one_model(config, wired)
        if config.num_folds and "model" in wired:
            problems.append(("folds", "cross-training needs a registry model in `with.model`, not a trained input"))
        return problems

    def run(self, ctx: StepContext) -> None:
        import numpy as np

        cfg: PredictConfig = ctx.config
        data = ctx.input("data")
        table = data.table()
        names = class_names_of(table)
        idx = split_indices(table, cfg.split, where="with.split")
        if cfg.probe:
            idx, probs = self._probe(ctx, table, idx, names)
        elif cfg.num_folds:
            probs = self._out_of_fold(ctx, table, idx, names)
        else:
            probs = self._held_out(ctx, table, idx, names)
        labels = np.asarray(table["label"])[idx]
        ids = np.asarray(table["id"])[idx]
        ctx.save_array("pred_probs", probs.astype(np.float32), ids, table=data, split=cfg.split)
        accuracy = float((probs.argmax(1) == labels).mean())
        ctx.metrics.update(rows=len(idx), accuracy=round(accuracy, 4), folds=cfg.num_folds)

    def _held_out(self, ctx: StepContext, table, idx, names):
        from curate.learn import predict

        cfg: PredictConfig = ctx.config
        trained = ctx.maybe_input("model")
        model = trained.model() if trained else build_model(cfg, class_names=names, seed=ctx.seed)
        check_class_names(model, names)
        require_trained_head(model, names, output="pred_probs", fixes=(
            "train it (a `train` step wired to `inputs.model`), cross-train it out of fold (`folds: 5`), or "
            "probe an embed step's vectors (`probe: linear` with `inputs.embeddings`)"))
        # the device resolves where the model runs (a Ray worker may have the GPU the driver lacks)
        return predict(model, table, indices=idx, batch_size=cfg.batch_size, device=ctx.device,
                       progress=ctx.progress, executor=ctx.executor(cfg.executor))

    def _out_of_fold(self, ctx: StepContext, table, idx, names):
        import numpy as np

        from curate.data import decode_images
        from curate.learn import cross_val_pred_probs

        cfg: PredictConfig = ctx.config
        labels = np.asarray(table["label"])[idx]
        size = build_model(cfg, class_names=names, seed=ctx.seed).preprocess.size
        images = decode_images(table, idx, size=size)
        fit_kwargs = dict(cfg.train.fit_kwargs(), augment=cfg.train.augment())
        return cross_val_pred_probs(
            lambda fold: build_model(cfg, class_names=names, seed=ctx.seed + fold),
            images, labels, folds=cfg.num_folds, fit_kwargs=fit_kwargs, seed=ctx.seed,
            device=ctx.torch_device(), progress=ctx.progress,
        )

    def _probe(self, ctx: StepContext, table, idx, names):
        """(rows, pred_probs): the rows of `split` that the embed step embedded, scored out of fold."""
        import time

        import numpy as np

        from curate.artifacts import locate_ids
        from curate.learn import create_probe, cross_val_probe

        cfg: PredictConfig = ctx.config
        emb = ctx.input("embeddings")
        vectors, emb_ids = emb.array("embeddings")
        pos, found = locate_ids(np.asarray(table["id"])[idx], emb_ids)
        if not found.any():
            raise UsageError(f"none of the {len(idx)} rows of split {cfg.split!r} were embedded by step "
                             f"'{emb.step_id}'; embed this table's rows (the embed step's `split`)")
        if not found.all():
            log.info("probe: %d of the %d rows of split %r were not embedded by '%s'; predicting the %d embedded "
                     "rows", int((~found).sum()), len(idx), cfg.split, emb.step_id, int(found.sum()))
        idx = np.asarray(idx)[found]
        options = {"l2": cfg.l2} if cfg.probe == "linear" else {"k": cfg.knn_k, "temperature": cfg.knn_temperature}
        start = time.perf_counter()
        probs = cross_val_probe(np.asarray(vectors[pos[found]], dtype=np.float32),
                                np.asarray(table["label"], dtype=np.int64)[idx], create_probe(cfg.probe, **options),
                                folds=cfg.num_folds, seed=ctx.seed, num_classes=len(names))
        ctx.metrics.update(probe=cfg.probe, probe_seconds=round(time.perf_counter() - start, 3),
                           embeddings=emb.step_id)
        return idx, probs
