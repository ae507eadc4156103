"""`train`: fit a registry model on one split of a table version; report held-out accuracy."""

from __future__ import annotations

from dataclasses import dataclass

from curate.config import option
from curate.steps.base import Role, Step, StepContext
from curate.steps.options import FitOptions, ModelOptions, build_model, class_names_of, split_indices


@dataclass(frozen=True, kw_only=True)
class TrainConfig(ModelOptions, FitOptions):
    model: str = option("convnet", help="registry model name")
    weights: str | None = option(None, help="initial weights: null (random), 'default' or a path")
    split: str = option("train", help="rows to train on")
    eval_split: str | None = option("test", help="held-out rows for accuracy (null: none)")


class TrainStep(Step):
    summary = "Train a model with curate.learn.fit; writes safetensors weights and held-out accuracy."
    version = 1
    Config = TrainConfig
    inputs = {"data": Role(("table",), help="the table version to train on")}
    produces = ("model",)

    def run(self, ctx: StepContext) -> None:
        import numpy as np

        from curate.data import decode_images
        from curate.learn import ArrayData, fit

        cfg: TrainConfig = ctx.config
        table = ctx.input("data").table()
        names = class_names_of(table)
        model = build_model(cfg, class_names=names, seed=ctx.seed)
        size = model.preprocess.size
        train_idx = split_indices(table, cfg.split, where="with.split")
        labels = np.asarray(table["label"])
        images = decode_images(table, train_idx, size=size)
        eval_data = None
        if cfg.eval_split:
            eval_idx = split_indices(table, cfg.eval_split, where="with.eval_split")
            eval_data = (decode_images(table, eval_idx, size=size), labels[eval_idx])
        data = ArrayData(images, labels[train_idx], augment=cfg.augment(), num_classes=len(names))
        result = fit(model, data, **cfg.fit_kwargs(), seed=ctx.seed, device=ctx.torch_device(),
                     eval_data=eval_data, progress=ctx.progress)
        ctx.save_model(model)
        ctx.write_json("history.json", result.history)
        last = result.history[-1]
        ctx.metrics.update(train_rows=len(train_idx), epochs=cfg.epochs, train_loss=round(float(last["loss"]), 4))
        if result.final_accuracy is not None:
            ctx.metrics.update(accuracy=round(float(result.final_accuracy), 4), eval_rows=len(eval_data[1]))
