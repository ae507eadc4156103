"""`ssl`: train a registry backbone without labels (SimCLR's NT-Xent, :mod:`curate.learn.ssl`).

The result is a ``model`` artifact like a `train` step's, so `embed` (and through it `index`,
`duplicates` and an embedding-conditioned `train_diffusion`) takes it in ``inputs.model``; its
classifier head stays untrained and is saved as such, so `predict` refuses it. Labels are read
only by the optional k-NN monitor on ``eval_split``, never by the training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from curate.config import ConfigValueError, option
from curate.data.table import class_names_of, split_indices
from curate.steps.base import Role, Step, StepContext
from curate.steps.options import ModelOptions, build_model


@dataclass(frozen=True, kw_only=True)
class SSLConfig(ModelOptions):
    model: str = option("resnet20-cifar", help="registry backbone (its pooled features are the representation)")
    weights: str | None = option(None, help="initial weights: null (random init: nothing downloaded), 'default' "
                                            "or a path", path=True)
    split: str | None = option("train", help="rows to train on, labels unread (null: every row)")
    eval_split: str | None = option(
        "test", help="held-out rows scored by a cosine k-NN on the training rows' labels, a monitor only (null: none)")
    epochs: int = option(20, gt=0)
    batch_size: int = option(256, gt=1, help="images per batch (2x views; NT-Xent's negatives)")
    lr: float = option(0.06, gt=0, help="peak SGD learning rate (cosine schedule)")
    momentum: float = option(0.9, ge=0, lt=1)
    weight_decay: float = option(5e-4, ge=0)
    warmup_epochs: int = option(0, ge=0)
    temperature: float = option(0.5, gt=0, help="NT-Xent temperature (SimCLR's CIFAR-10 value)")
    crop_scale: tuple[float, float] = option((0.08, 1.0), help="random resized crop: range of the area share")
    color_strength: float = option(0.5, ge=0, le=1.25, help="colour distortion strength s (SimCLR CIFAR-10: 0.5)")
    projection_hidden: int = option(512, gt=0, help="hidden width of the projection head")
    projection_dim: int = option(128, gt=0, help="output width of the projection head (the loss's space)")
    knn_k: int = option(20, gt=0, help="neighbours of the k-NN monitor")
    checkpoint_every: int = option(1, gt=0, help="write a resumable checkpoint every this many epochs")

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigValueError("crop_scale", f"expected (low, high) with 0 < low <= high <= 1, got [{lo}, {hi}]")
        if self.warmup_epochs > self.epochs:
            raise ConfigValueError("warmup_epochs", f"expected at most epochs ({self.epochs}), "
                                                    f"got {self.warmup_epochs}")


class SSLStep(Step):
    summary = ("Self-supervised backbone (SimCLR NT-Xent on two views, no labels); a `model` for embed, index, "
               "duplicates and embedding-conditioned diffusion.")
    version = 1
    Config = SSLConfig
    inputs = {"data": Role(("table",), help="the table version whose images train the backbone")}
    produces = ("model",)

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        if metrics.get("knn_accuracy") is None:
            return f"final NT-Xent loss {metrics['final_loss']:.4g} (no held-out split)"
        return f"k-NN accuracy {metrics['knn_accuracy']:.2%} ({metrics['eval_rows']:,} held-out rows)"

    def run(self, ctx: StepContext) -> None:
        import numpy as np

        from curate import workspace
        from curate.config import to_dict
        from curate.data import decode_images
        from curate.learn.ssl import ColorJitter, TwoViews, train_ssl

        cfg: SSLConfig = ctx.config
        source = ctx.input("data")
        table = source.table()
        names = class_names_of(table)
        model = build_model(cfg, class_names=names, seed=ctx.seed)
        rows = split_indices(table, cfg.split, where="with.split")
        images = decode_images(table, rows, size=model.preprocess.size)
        views = TwoViews(crop_scale=tuple(cfg.crop_scale), color=ColorJitter(strength=cfg.color_strength))
        key = workspace.json_sha256({"config": to_dict(cfg), "data": source.entry("table")["fingerprint"],
                                     "seed": ctx.seed})
        result = train_ssl(
            model, images, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum,
            weight_decay=cfg.weight_decay, warmup_epochs=cfg.warmup_epochs, temperature=cfg.temperature,
            views=views, head_hidden=cfg.projection_hidden, head_out=cfg.projection_dim,
            checkpoint_dir=ctx.path("checkpoints"), checkpoint_every=cfg.checkpoint_every, resume_key=key,
            seed=ctx.seed, device=ctx.torch_device(), progress=ctx.progress)
        model.head_trained = False  # the backbone learned; the head never saw a label
        entry = ctx.save_model(model)
        entry["objective"] = "simclr"
        ctx.write_json("history.json", result.history)
        ctx.metrics.update(train_rows=len(rows), epochs=cfg.epochs, final_loss=round(result.history[-1]["loss"], 4),
                           resumed_from_epoch=result.resumed_from)
        if cfg.eval_split:
            from curate.learn import KnnProbe, embed, embed_images

            eval_rows = split_indices(table, cfg.eval_split, where="with.eval_split")
            labels = np.asarray(table["label"])
            device = ctx.torch_device()
            train_x = embed_images(model, images, normalize=True, device=device)  # decoded above, at the model's size
            eval_x = embed(model, table, indices=eval_rows, normalize=True, device=device, progress=False)
            probs = KnnProbe(k=cfg.knn_k).predict_proba(train_x, labels[rows], eval_x, num_classes=len(names))
            ctx.metrics.update(knn_accuracy=round(float((probs.argmax(1) == labels[eval_rows]).mean()), 4),
                               eval_rows=len(eval_rows))
