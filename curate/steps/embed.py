"""`embed`: float32 feature vectors of a table's rows from a model's pooled features.

The embeddings entry records the model (``model``: a registry spec or the trained model artifact),
so a query image or a worker is embedded by exactly the same model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from curate.config import option
from curate.data.table import class_names_of, split_indices
from curate.steps.base import Role, Step, StepContext
from curate.steps.options import ExecutorOptions, ModelOptions, check_class_names, model_spec, require_one_model


@dataclass(frozen=True, kw_only=True)
class EmbedConfig(ModelOptions, ExecutorOptions):
    split: str | None = option(None, help="rows to embed (null: all)")
    batch_size: int = option(256, gt=0)
    normalize: bool = option(True, help="L2-normalize each vector (cosine search)")


class EmbedStep(Step):
    summary = "Embed images with a model's pooled features (float32, optionally L2-normalized)."
    version = 2
    Config = EmbedConfig
    inputs = {
        "data": Role(("table",), help="the table version to embed"),
        "model": Role(("model",), optional=True, help="a trained model (instead of with.model)"),
    }
    produces = ("embeddings",)

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        return f"{metrics['rows']:,} x {metrics['dim']} embeddings ({metrics['images_per_s']:,.0f} images/s)"

    @classmethod
    def check(cls, config: EmbedConfig, wired):
        return require_one_model(config, wired)

    def run(self, ctx: StepContext) -> None:
        import time

        import numpy as np

        from curate.artifacts import load_recorded_model, trained_model_spec
        from curate.learn import embed

        cfg: EmbedConfig = ctx.config
        data = ctx.input("data")
        table = data.table()
        idx = split_indices(table, cfg.split, where="with.split")
        trained = ctx.maybe_input("model")
        spec = trained_model_spec(trained.step_id, trained.entry("model")) if trained else \
            model_spec(cfg, class_names=class_names_of(table), seed=ctx.seed)
        model = load_recorded_model(spec, run_dir=ctx.run_dir)
        if not trained:
            check_class_names(model, spec["class_names"])
        start = time.perf_counter()
        vectors = embed(model, table, indices=idx, batch_size=cfg.batch_size, normalize=cfg.normalize,
                        device=ctx.device, progress=ctx.progress, executor=ctx.executor(cfg.executor))
        seconds = time.perf_counter() - start
        ids = np.asarray(table["id"])[idx]
        entry = ctx.save_array("embeddings", vectors.astype(np.float32), ids, table=data, split=cfg.split)
        entry.update(model=spec, normalize=cfg.normalize)
        ctx.metrics.update(rows=len(idx), dim=int(vectors.shape[1]), images_per_s=round(len(idx) / seconds, 1))
