"""`embed`: float32 feature vectors of a table's rows from a model's pooled features."""

from __future__ import annotations

from dataclasses import dataclass

from curate.config import option
from curate.steps.base import Role, Step, StepContext
from curate.data.table import class_names_of, split_indices
from curate.steps.options import ModelOptions, build_model, require_one_model


@dataclass(frozen=True, kw_only=True)
class EmbedConfig(ModelOptions):
    split: str | None = option(None, help="rows to embed (null: all)")
    batch_size: int = option(256, gt=0)
    normalize: bool = option(True, help="L2-normalize each vector (cosine search)")


class EmbedStep(Step):
    summary = "Embed images with a model's pooled features (float32, optionally L2-normalized)."
    version = 1
    Config = EmbedConfig
    inputs = {
        "data": Role(("table",), help="the table version to embed"),
        "model": Role(("model",), optional=True, help="a trained model (instead of with.model)"),
    }
    produces = ("embeddings",)

    @classmethod
    def check(cls, config: EmbedConfig, wired):
        return require_one_model(config, wired)

    def run(self, ctx: StepContext) -> None:
        import time

        import numpy as np

        from curate.learn import embed

        cfg: EmbedConfig = ctx.config
        data = ctx.input("data")
        table = data.table()
        idx = split_indices(table, cfg.split, where="with.split")
        trained = ctx.maybe_input("model")
        model = trained.model() if trained else build_model(cfg, class_names=class_names_of(table), seed=ctx.seed)
        start = time.perf_counter()
        vectors = embed(model, table, indices=idx, batch_size=cfg.batch_size, normalize=cfg.normalize,
                        device=ctx.torch_device(), progress=ctx.progress)
        seconds = time.perf_counter() - start
        ids = np.asarray(table["id"])[idx]
        ctx.save_array("embeddings", vectors.astype(np.float32), ids, table=data, split=cfg.split)
        ctx.metrics.update(rows=len(idx), dim=int(vectors.shape[1]), images_per_s=round(len(idx) / seconds, 1))
