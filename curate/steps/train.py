"""`train`: fit a registry model on one split of a table version; report held-out accuracy.

Targets are the labels (``onehot``), the annotator's global softmax (``soft``) or label
maps pooled over each random-resized crop (``relabel``, LabelPooling); the last two read
the ``label_maps`` of a `relabel` step. ``mix`` adds CutMix or ResizeMix; with label maps,
``relabel_mix`` picks how the two samples' targets mix (``paper``, the default, as ReLabel's
code: the whole-crop targets by pasted area; ``exact``: each region pooled from its own map).

``seeds: N`` trains N models that differ only in their seeds, ``defaults.seed + 0 .. N-1``
(initial weights and every draw of ``fit``), and reports the mean held-out accuracy with
its 95% interval over them; the first seed's model is the step's ``model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from curate.config import ConfigValueError, option
from curate.steps.base import Role, Step, StepContext
from curate.data.table import class_names_of, split_indices
from curate.steps.options import FitOptions, MixOptions, ModelOptions, build_model


@dataclass(frozen=True, kw_only=True)
class TrainConfig(ModelOptions, FitOptions, MixOptions):
    model: str = option("convnet", help="registry model name")
    weights: str | None = option(None, help="initial weights: null (random), 'default' or a path", path=True)
    split: str = option("train", help="rows to train on")
    eval_split: str | None = option("test", help="held-out rows for accuracy (null: none)")
    seeds: int = option(1, gt=0, help="models trained with seeds defaults.seed + 0..seeds-1 (accuracy: their mean "
                                      "+- 95% interval; the first one is the step's model)")
    targets: Literal["onehot", "soft", "relabel"] = option(
        "onehot", help="onehot: labels; soft: the annotator's global softmax; relabel: label maps pooled per crop")
    crop: Literal["pad", "resized"] = option(
        "pad", help="pad: random crop after `crop_padding`; resized: random-resized crop (needed by relabel)")
    crop_scale: tuple[float, float] = option((0.08, 1.0), help="resized crop: range of the crop's share of the area")
    relabel_mix: Literal["paper", "exact"] = option(
        "paper", help="targets relabel with a mix: paper mixes the two crops' pooled targets by the pasted area "
                      "(ReLabel's code); exact pools the pasted box from the source map and the rest from the "
                      "target map (a curate variant)")

    def __post_init__(self) -> None:
        for name in ("crop_scale", "mix_scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi <= 1:
                raise ConfigValueError(name, f"expected (low, high) with 0 < low <= high <= 1, got [{lo}, {hi}]")


class TrainStep(Step):
    summary = ("Train a model with curate.learn.fit (over one or more seeds); writes safetensors weights, "
               "held-out accuracy and its curves.")
    version = 4
    Config = TrainConfig
    inputs = {
        "data": Role(("table",), help="the table version to train on"),
        "label_maps": Role(("label_maps",), optional=True, help="a relabel step (targets soft or relabel)"),
    }
    produces = ("model",)

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        if metrics.get("accuracy") is None:
            return f"final train loss {metrics['train_loss']:.4g} (no held-out split)"
        if metrics.get("accuracy_ci95") is None:
            return f"held-out accuracy {metrics['accuracy']:.2%} ({metrics['eval_rows']:,} rows)"
        return (f"held-out accuracy {metrics['accuracy']:.2%} ± {metrics['accuracy_ci95']:.2%} "
                f"(mean, 95% interval over {metrics['seeds']} seeds; {metrics['eval_rows']:,} rows)")

    @classmethod
    def check(cls, config: TrainConfig, wired):
        problems = []
        if config.targets != "onehot" and "label_maps" not in wired:
            problems.append(("inputs.label_maps", f"targets '{config.targets}' reads label maps: wire a `relabel` "
                                                  "step to `inputs.label_maps`"))
        if config.targets == "onehot" and "label_maps" in wired:
            problems.append(("targets", "`inputs.label_maps` is wired but targets is 'onehot'; "
                                        "use targets 'soft' or 'relabel', or drop the input"))
        if config.targets == "relabel" and config.crop != "resized":
            problems.append(("crop", "targets 'relabel' pools the label map over random-resized crops; "
                                     "set crop: resized"))
        if config.relabel_mix != "paper" and (config.targets != "relabel" or config.mix == "none"):
            problems.append(("relabel_mix", f"'{config.relabel_mix}' mixes label-map targets, so it needs "
                                            "targets: relabel and mix: cutmix or resizemix; drop it otherwise"))
        return problems

    def run(self, ctx: StepContext) -> None:
        import numpy as np

        from curate.data import decode_images
        from curate.learn import ArrayData, fit
        from curate.learn.curves import save_curves
        from curate.relabel import LabelMapStore, ResizedCrop, ResizedCropData
        from curate.stats import summarize

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
        maps = targets = None
        if cfg.targets == "onehot":
            targets = labels[train_idx]
        else:
            source = ctx.input("label_maps")
            store = LabelMapStore(source.dir / source.entry("label_maps")["path"])
            store.check_classes(names)
            ids = np.asarray(table["id"])[train_idx]
            if cfg.targets == "soft":
                targets = store.read_array("global_probs", ids)
            else:
                maps = store.read(ids)
        mixer = cfg.mixer()
        if cfg.crop == "resized":
            crop = ResizedCrop(scale=cfg.crop_scale, flip=cfg.flip)
            data = ResizedCropData(images, maps=maps, targets=targets, num_classes=len(names), crop=crop,
                                   mixer=mixer, relabel_mix=cfg.relabel_mix)
            kind, mix = data.target_kind, None
        else:
            data = ArrayData(images, targets, augment=cfg.augment(), num_classes=len(names))
            kind, mix = ("soft" if targets.ndim == 2 else "hard"), mixer
        histories: dict[int, list[dict[str, float]]] = {}
        for seed in range(ctx.seed, ctx.seed + cfg.seeds):
            if seed != ctx.seed:  # the first model was built above, to size the images
                model = build_model(cfg, class_names=names, seed=seed)
            result = fit(model, data, **cfg.fit_kwargs(), targets=kind, mix=mix, seed=seed,
                         device=ctx.torch_device(), eval_data=eval_data, progress=ctx.progress)
            histories[seed] = result.history
            if seed == ctx.seed:
                ctx.save_model(model)
        ctx.write_json("history.json", [{"seed": seed, "history": rows} for seed, rows in histories.items()])
        ctx.write_file("curve.png", lambda p: save_curves(
            p, histories, title=f"{ctx.step_id}: {cfg.model} on {len(train_idx):,} '{cfg.split}' rows, "
                                f"{cfg.seeds} seed{'s' if cfg.seeds > 1 else ''}"))
        last = [rows[-1] for rows in histories.values()]
        train_loss = round(float(np.mean([row["loss"] for row in last])), 4)
        if eval_data is None:
            ctx.metrics.update(seeds=cfg.seeds, train_loss=train_loss)
        else:  # the mean and its interval first: the run summary shows the first metrics
            held_out = summarize([row["eval_accuracy"] for row in last])
            ctx.metrics.update(accuracy=round(held_out["mean"], 4),
                               accuracy_ci95=None if held_out["ci95"] is None else round(held_out["ci95"], 4),
                               seeds=cfg.seeds, train_loss=train_loss,
                               accuracy_runs=[round(a, 4) for a in held_out["runs"]], eval_rows=len(eval_data[1]))
        ctx.metrics.update(train_rows=len(train_idx), epochs=cfg.epochs, targets=cfg.targets, mix=cfg.mix)
        if maps is not None and mixer is not None:
            ctx.metrics["relabel_mix"] = cfg.relabel_mix
