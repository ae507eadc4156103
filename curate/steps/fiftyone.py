"""The ``fiftyone`` step: mirror a table version into the run's FiftyOne dataset.

It adds each wired ``predict`` step's probabilities as a ``Classification`` field named
after that step (plus a ``<step>_mistakes`` saved view when there is ground truth), and
an embeddings plot (brain key ``<step>_viz``) per wired ``embed`` step. What it wrote is
recorded in the step's ``fiftyone.json``, its metrics, and ``<run>/fiftyone.json``
(read by ``curate app`` and ``curate clean``). Fields, plots and views it wrote on an
earlier run and no longer writes are removed, so the dataset matches the recipe.

Then it shows every other completed step of the run that has App output (audits, duplicates,
indexes, label maps: :func:`curate.fo.runs.show_completed_steps`), so the App is complete
whether this step runs first or last.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np

from curate.config import option
from curate.steps.base import FIFTYONE_RECORD, Input, Role, Step, StepContext

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FiftyOneConfig:
    dataset_name: str | None = option(
        None, help="FiftyOne dataset name; default: derived from the run directory (curate-<name>-<hash>)")
    visualization: Literal["pca", "tsne", "none"] = option(
        "pca", help="embeddings plot method; tsne falls back to pca below 100 samples")
    media: Literal["reference", "write"] = option(
        "reference", help="reference: show source files in place; write: copy every image into <run>/media")
    database_uri: str | None = option(
        None, help="external MongoDB URI; default: FIFTYONE_DATABASE_URI, else curate's embedded database")
    mistakes_views: bool = option(True, help="save a `<predict step>_mistakes` view per predictions input")


class FiftyOneStep(Step):
    kind = "fiftyone"
    version = 3
    summary = "Mirror the sample table, predictions and embeddings plots into a FiftyOne dataset for the App"
    Config = FiftyOneConfig
    inputs = {
        "data": Role(("table",), help="the table version to mirror"),
        "predictions": Role(("pred_probs",), many=True, optional=True,
                            help="predict steps; each becomes a Classification field named after the step"),
        "embeddings": Role(("embeddings",), many=True, optional=True,
                           help="embed steps; each becomes an embeddings plot in the App"),
    }
    produces = ()

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        return f"{metrics['samples']:,} samples in dataset '{metrics['dataset']}'"

    @classmethod
    def check(cls, config: Any, wired: Mapping[str, list[str]]) -> list[tuple[str | None, str]]:
        from curate.fo.fields import check_field_name, field_key

        problems: list[tuple[str | None, str]] = []
        seen: dict[str, str] = {}
        for role in ("predictions", "embeddings"):
            for step_id in wired.get(role, []):
                key = field_key(step_id)
                try:
                    check_field_name(key, what=f"field for step '{step_id}'")
                except ValueError as exc:
                    problems.append((f"inputs.{role}", f"{exc}; rename step '{step_id}'"))
                if role == "predictions" and seen.setdefault(key, step_id) != step_id:
                    problems.append((f"inputs.{role}", f"steps '{seen[key]}' and '{step_id}' map to the same "
                                     f"field `{key}`; rename one"))
        return problems

    def run(self, ctx: StepContext) -> None:
        from curate.fo import database, runs
        from curate.fo.mirror import mirror_table, mirrored_fields

        cfg: FiftyOneConfig = ctx.config
        started = time.monotonic()
        db = database.configure(cfg.database_uri)
        data = ctx.input("data")
        table = data.table()
        name = cfg.dataset_name or runs.dataset_name_for_run(ctx.run_dir.name, ctx.run_dir)
        class_names = getattr(table.features.get("label"), "names", None)
        dataset = mirror_table(
            table,
            dataset_name=name,
            media_dir=Path(ctx.run_dir) / "media",
            class_names=class_names,
            media=cfg.media,
            info={"run_dir": str(Path(ctx.run_dir).resolve()), "step": ctx.step_id,
                  "table": {"step": data.step_id, "fingerprint": data.entry("table")["fingerprint"]}},
        )
        table_ids = np.asarray(table["id"], dtype=str)
        written: dict[str, list[str]] = {"fields": mirrored_fields(table), "brain_keys": [], "views": []}
        unmatched: dict[str, int] = {}
        for inp in ctx.inputs_of("predictions"):
            self._add_predictions(dataset, inp, table_ids, class_names, ctx, written, unmatched)
        if cfg.visualization != "none":
            for inp in ctx.inputs_of("embeddings"):
                self._add_plot(dataset, inp, table_ids, ctx, written, unmatched)

        previous = runs.read_run_record(ctx.run_dir)
        if previous is not None and (previous.get("dataset"), previous.get("step")) == (name, ctx.step_id):
            runs.remove_outputs(dataset, previous, keep=written)
        # a URI with a password stays in the recipe only; `curate app` then needs FIFTYONE_DATABASE_URI
        uri = cfg.database_uri if cfg.database_uri and database.redact(cfg.database_uri) == cfg.database_uri else None
        record = {
            "dataset": name,
            "step": ctx.step_id,
            "database": "embedded" if db.embedded else "external",
            "database_uri": uri,
            "samples": len(dataset),
            **written,
        }
        runs.write_run_record(ctx.run_dir, record)
        ctx.write_json(FIFTYONE_RECORD, record)
        shown = runs.show_completed_steps(ctx.run_dir, exclude=ctx.step_id)
        ctx.metrics.update({**record, "unmatched_ids": unmatched, "steps_shown": sorted(s for s, r in shown.items() if r),
                            "seconds": round(time.monotonic() - started, 2)})

    @staticmethod
    def _add_predictions(dataset, inp: Input, table_ids, class_names, ctx: StepContext, written, unmatched) -> None:
        from fiftyone import ViewField as F

        from curate.fo.fields import GROUND_TRUTH, add_predictions, field_key
        from curate.fo.views import save_view

        if class_names is None:
            raise ValueError(f"predictions from step '{inp.step_id}' need class names, "
                             "but the table has no ClassLabel `label` column")
        values, ids = _matched(inp, "pred_probs", table_ids, unmatched)
        key = field_key(inp.step_id)
        add_predictions(dataset, key, values, ids, class_names)
        written["fields"].append(key)
        if ctx.config.mistakes_views and GROUND_TRUTH in dataset.get_field_schema():
            view = (dataset.exists(key).exists(GROUND_TRUTH)
                    .match(F(f"{key}.label") != F(f"{GROUND_TRUTH}.label"))
                    .sort_by(F(f"{key}.confidence"), reverse=True))
            save_view(dataset, f"{key}_mistakes", view)
            written["views"].append(f"{key}_mistakes")

    @staticmethod
    def _add_plot(dataset, inp: Input, table_ids, ctx: StepContext, written, unmatched) -> None:
        from curate.fo.fields import field_key
        from curate.fo.visualize import TSNE_MIN_SAMPLES, compute_embeddings_plot

        values, ids = _matched(inp, "embeddings", table_ids, unmatched)
        method = ctx.config.visualization
        if method == "tsne" and len(ids) < TSNE_MIN_SAMPLES:
            log.warning("step '%s': %d samples are too few for t-SNE (needs %d); using PCA",
                        inp.step_id, len(ids), TSNE_MIN_SAMPLES)
            method = "pca"
        key = compute_embeddings_plot(dataset, values, ids, brain_key=f"{field_key(inp.step_id)}_viz",
                                      method=method, seed=ctx.seed, progress=ctx.progress)
        written["brain_keys"].append(key)


def _matched(inp: Input, type_: str, table_ids: np.ndarray, unmatched: dict[str, int]):
    """``(values, ids)`` restricted to ids of the mirrored table; counts and logs the others."""
    values, ids = inp.array(type_)
    ids = np.asarray(ids, dtype=str)
    keep = np.isin(ids, table_ids)
    if not keep.any():
        raise ValueError(f"none of the {len(ids)} `{type_}` ids of step '{inp.step_id}' are in the mirrored table; "
                         "wire it to a step aligned with the same table")
    if not keep.all():
        unmatched[inp.step_id] = int((~keep).sum())
        log.warning("step '%s': %d of %d `%s` rows have ids not in the table; they are not shown",
                    inp.step_id, int((~keep).sum()), len(ids), type_)
    return np.asarray(values)[keep], ids[keep]
