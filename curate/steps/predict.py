"""`predict`: class probabilities of a model on a table's rows, optionally out-of-fold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from curate.config import ConfigValueError, option
from curate.steps.base import Role, Step, StepContext
from curate.data.table import class_names_of, split_indices
from curate.steps.options import FitOptions, ModelOptions, build_model, check_class_names, require_one_model


@dataclass(frozen=True, kw_only=True)
class PredictConfig(ModelOptions):
    split: str | None = option(None, help="rows to predict (null: all)")
    batch_size: int = option(256, gt=0)
    folds: int = option(0, ge=0, help="K >= 2: out-of-fold pred_probs by K-fold cross-training of `model`")
    train: FitOptions = option(default_factory=FitOptions, help="how each fold's model is trained (folds only)")

    def __post_init__(self) -> None:
        if self.folds == 1:
            raise ConfigValueError("folds", "expected 0 (off) or at least 2, got 1")


class PredictStep(Step):
    summary = "Predict class probabilities (pred_probs) with a model; `folds: K` gives out-of-fold predictions."
    version = 1
    Config = PredictConfig
    inputs = {
        "data": Role(("table",), help="the table version to predict on"),
        "model": Role(("model",), optional=True, help="a trained model (instead of with.model)"),
    }
    produces = ("pred_probs",)

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        if metrics.get("folds"):
            return f"out-of-fold accuracy {metrics['accuracy']:.2%} ({metrics['folds']} folds, {metrics['rows']:,} rows)"
        return f"accuracy {metrics['accuracy']:.2%} on {metrics['rows']:,} rows"

    @classmethod
    def check(cls, config: PredictConfig, wired):
        problems = require_one_model(config, wired)
        if config.folds and "model" in wired:
            problems.append(("folds", "cross-training needs a registry model in `with.model`, not a trained input"))
        return problems

    def run(self, ctx: StepContext) -> None:
        import numpy as np

        from curate.learn import predict

        cfg: PredictConfig = ctx.config
        data = ctx.input("data")
        table = data.table()
        names = class_names_of(table)
        idx = split_indices(table, cfg.split, where="with.split")
        labels = np.asarray(table["label"])[idx]
        if cfg.folds:
            probs = self._out_of_fold(ctx, table, idx, labels, names)
        else:
            trained = ctx.maybe_input("model")
            model = trained.model() if trained else build_model(cfg, class_names=names, seed=ctx.seed)
            check_class_names(model, names)
            probs = predict(model, table, indices=idx, batch_size=cfg.batch_size, device=ctx.torch_device(),
                            progress=ctx.progress)
        ids = np.asarray(table["id"])[idx]
        ctx.save_array("pred_probs", probs.astype(np.float32), ids, table=data, split=cfg.split)
        accuracy = float((probs.argmax(1) == labels).mean())
        ctx.metrics.update(rows=len(idx), accuracy=round(accuracy, 4), folds=cfg.folds)

    def _out_of_fold(self, ctx: StepContext, table, idx, labels, names):
        from curate.data import decode_images
        from curate.learn import cross_val_pred_probs

        cfg: PredictConfig = ctx.config
        probe = build_model(cfg, class_names=names, seed=ctx.seed)
        images = decode_images(table, idx, size=probe.preprocess.size)
        fit_kwargs = dict(cfg.train.fit_kwargs(), augment=cfg.train.augment())
        return cross_val_pred_probs(
            lambda fold: build_model(cfg, class_names=names, seed=ctx.seed + fold),
            images, labels, folds=cfg.folds, fit_kwargs=fit_kwargs, seed=ctx.seed,
            device=ctx.torch_device(), progress=ctx.progress,
        )
