"""`relabel`: annotate a table's rows with localized label maps and global multi-labels.

Outputs: ``label_maps`` (a folder of top-k safetensors shards + ``index.json``, see
:mod:`curate.relabel.storage`), ``pred_probs`` (the annotator's global softmax, the
``soft`` targets of `train`), ``label_scores`` (each class's share of the image) and
``multi_labels`` (``label_scores >= threshold``), aligned to the annotated rows.
An interrupted annotation resumes: finished shards are kept. In the run's FiftyOne dataset it
shows each image's multi-labels, a heatmap of its top class and the ``multi_label_candidates``
view (:mod:`curate.relabel.fiftyone`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from curate.config import option
from curate.data.table import class_names_of, split_indices
from curate.steps.base import Input, Role, Step, StepContext
from curate.steps.options import (ExecutorOptions, ModelOptions, build_model, check_class_names, require_one_model,
                                  require_trained_head)

MAPS_DIR = "label_maps"


@dataclass(frozen=True, kw_only=True)
class RelabelConfig(ModelOptions, ExecutorOptions):
    annotator: str = option("dense_classifier", help="registered annotator (curate.relabel.ANNOTATORS)")
    resolution: int | None = option(None, gt=0, help="annotator input size in pixels (null: the model's own)")
    top_k: int = option(5, gt=0, help="classes stored per map location")
    threshold: float = option(0.25, gt=0, le=1, help="a class is one of an image's labels when its area share "
                                                     "reaches this")
    batch_size: int = option(256, gt=0)
    shard_size: int = option(4096, gt=0, help="images per stored shard (the unit of resuming)")
    split: str | None = option("train", help="rows to annotate (null: all)")
    fiftyone: bool = option(True, help="multi-labels, top-class heatmaps and a view in the run's FiftyOne dataset")


class RelabelStep(Step):
    summary = "Annotate images with top-k label maps (ReLabel) and global multi-labels, with a classifier."
    version = 2
    Config = RelabelConfig
    inputs = {
        "data": Role(("table",), help="the table version to annotate"),
        "model": Role(("model",), optional=True, help="a trained annotator (instead of with.model)"),
    }
    produces = ("label_maps", "pred_probs", "label_scores", "multi_labels")

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        return (f"{metrics['mean_classes_per_image']:.2f} classes/image, {metrics['multi_label_share']:.1%} "
                f"multi-label ({metrics['map']} maps)")

    @classmethod
    def check(cls, config: RelabelConfig, wired):
        return require_one_model(config, wired)

    def run(self, ctx: StepContext) -> None:
        from curate.config import to_dict
        from curate.relabel import LabelMapStore, annotate, create_annotator, multi_labels
        from curate.relabel.storage import signature_of

        cfg: RelabelConfig = ctx.config
        data = ctx.input("data")
        table = data.table()
        names = class_names_of(table)
        idx = split_indices(table, cfg.split, where="with.split")
        trained = ctx.maybe_input("model")
        model = trained.model() if trained else build_model(cfg, class_names=names, seed=ctx.seed)
        check_class_names(model, names)
        require_trained_head(model, names, output="label maps", fixes=(
            "train an annotator on this table (a `train` step wired to `inputs.model`) or name a model trained on "
            "these classes"))
        annotator = create_annotator(cfg.annotator, model, resolution=cfg.resolution, top_k=cfg.top_k,
                                     device=ctx.device)  # resolved where the model runs
        what = {k: v for k, v in to_dict(cfg).items() if k not in ("threshold", "batch_size", "executor")}
        signature = signature_of({"config": what, "table": data.entry("table")["fingerprint"], "seed": ctx.seed,
                                  "model": trained.entry("model")["fingerprint"] if trained else None})
        done = annotate(annotator, table, ctx.path(MAPS_DIR), indices=idx, shard_size=cfg.shard_size,
                        batch_size=cfg.batch_size, signature=signature, class_names=names, progress=ctx.progress,
                        executor=ctx.executor(cfg.executor))
        store = LabelMapStore(done.folder)
        info = store.info
        ctx.add_output("label_maps", {
            "path": MAPS_DIR, "fingerprint": done.index_sha256, "rows": len(store), "top_k": info.top_k,
            "height": info.height, "width": info.width, "num_classes": info.num_classes, "threshold": cfg.threshold,
            "aligned_to": {"step": data.step_id, "fingerprint": data.entry("table")["fingerprint"],
                           "split": cfg.split},
        })
        ids = store.ids
        scores = store.read_array("label_scores")
        labels = multi_labels(scores, threshold=cfg.threshold)
        ctx.save_array("pred_probs", store.read_array("global_probs"), ids, table=data, split=cfg.split)
        ctx.save_array("label_scores", scores, ids, table=data, split=cfg.split)
        ctx.save_array("multi_labels", labels, ids, table=data, split=cfg.split)
        per_image = labels.sum(1)
        ctx.metrics.update(rows=len(ids), map=f"{info.height}x{info.width}", top_k=info.top_k,
                           mean_classes_per_image=round(float(per_image.mean()), 4),
                           multi_label_share=round(float((per_image >= 2).mean()), 4),
                           shards_computed=done.computed, shards_reused=done.reused)
        if done.images_per_s is not None:
            ctx.metrics["images_per_s"] = round(done.images_per_s, 1)

    @classmethod
    def show_in_fiftyone(cls, dataset, step: Input) -> dict[str, Any]:
        """``<key>_labels``, ``<key>_map`` and the ``multi_label_candidates`` view, from the stored maps."""
        from curate.fo.fields import field_key
        from curate.relabel.fiftyone import add_label_maps
        from curate.relabel.storage import LabelMapStore

        entry = step.entry("label_maps")
        return add_label_maps(dataset, LabelMapStore(step.dir / entry["path"]), prefix=field_key(step.step_id),
                              threshold=entry.get("threshold", 0.25))
