"""The `image_quality` step: blurry, dark, light, low-information, near-constant, grayscale-in-colour
and odd-size / odd-aspect-ratio images of a table version (no labels or predictions needed).

It decodes the rows in batches (mixed sizes allowed), measures each image
(:func:`audits.image_quality.measure_images`, a few numbers per image, so it streams), then scores
and flags the whole dataset at once (:func:`audits.image_quality.find_quality_issues`: odd sizes and
grayscale are relative to the dataset). It writes ``image_quality.parquet`` (per row: id, split,
measurements, ``<issue>_score`` severity and ``is_<issue>_issue`` flag per checked issue type,
Datalab's column names) and ``report/index.html`` with counts and a PNG grid per issue type, most
severe first. In the run's FiftyOne dataset it writes a score field ``<step>_<issue>`` per issue type,
a list field ``<step>_issues`` naming each sample's issues, and a saved view ``<step>_<issue>`` of the
flagged samples, most severe first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np

from audits.image_quality import ISSUE_TYPES, QualityIssues, QualityThresholds
from curate.config import ConfigValueError, option
from curate.steps.base import Input, Role, Step, StepContext

log = logging.getLogger(__name__)

TABLE_FILE = "image_quality.parquet"
REPORT_DIR = "report"
DESCRIPTIONS = {
    "blurry": "little edge energy at <= 64 px (CleanVision's blur score)",
    "dark": "99th percentile of perceived brightness is low",
    "light": "5th percentile of perceived brightness is high",
    "low_information": "low entropy of the colour histogram (few distinct values)",
    "near_constant": "pixel values barely vary",
    "grayscale": "no colour (R = G = B) in a mostly colour dataset",
    "odd_size": "area far from the dataset's median (robust z-score of log area)",
    "odd_aspect_ratio": "aspect ratio far from the dataset's median (robust z-score of log width/height)",
}


@dataclass(frozen=True, kw_only=True)
class ImageQualityConfig:
    """Options of the `image_quality` step (scores and thresholds: audits.image_quality)."""

    checks: tuple[Literal[ISSUE_TYPES], ...] = option(ISSUE_TYPES, help="issue types to check")  # type: ignore[valid-type]
    thresholds: QualityThresholds = option(default_factory=QualityThresholds,
                                           help="severity above which an image is flagged, per issue type")
    split: str | None = option(None, help="only the rows of this split (null: every row)")
    top: int = option(24, ge=0, help="examples per issue type in the report, most severe first")
    batch_size: int = option(256, gt=0, help="images decoded and measured together (lower it for large photos)")
    fiftyone: bool = option(True, help="score fields and one saved view per issue type in the run's FiftyOne "
                                       "dataset, if it has one")

    def __post_init__(self) -> None:
        if not self.checks:
            raise ConfigValueError("checks", f"name at least one issue type ({', '.join(ISSUE_TYPES)})")


class ImageQualityStep(Step):
    kind = "image_quality"
    version = 1
    summary = ("Image-quality issues (blurry, dark, light, low information, near constant, grayscale, odd size "
               "or aspect ratio): per-row scores and flags, report with example grids, FiftyOne views")
    Config = ImageQualityConfig
    inputs = {"data": Role(("table",), help="the table version whose images are checked")}
    produces = ("image_quality", "report")

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        top = sorted(((n, k) for k, n in metrics["counts"].items() if n), reverse=True)[:3]
        found = ": " + ", ".join(f"{n:,} {k.replace('_', ' ')}" for n, k in top) if top else ""
        return f"{metrics['flagged_any']:,} of {metrics['rows']:,} images flagged{found}"

    def run(self, ctx: StepContext) -> None:
        from audits.image_quality import find_quality_issues, measure_images, property_names, threshold_dict
        from curate.data import iter_image_batches
        from curate.data.table import split_indices

        cfg: ImageQualityConfig = ctx.config
        data = ctx.input("data")
        table = data.table()
        rows = split_indices(table, cfg.split, where=f"step '{ctx.step_id}'")
        batches = iter_image_batches(table, batch_size=cfg.batch_size, indices=rows, progress=ctx.progress,
                                     stack=False)
        properties = measure_images((batch["image"] for batch in batches), checks=cfg.checks)
        issues = find_quality_issues(properties, thresholds=cfg.thresholds, checks=cfg.checks)

        ids = np.asarray(table["id"], dtype=str)[rows]
        splits = np.asarray(table["split"], dtype=str)[rows]
        columns: dict[str, Any] = {"id": ids, "split": splits}
        columns.update({name: properties[name] for name in property_names(cfg.checks)})
        for issue in issues.checks:
            columns[f"{issue}_score"] = issues.scores[issue]
            columns[f"is_{issue}_issue"] = issues.flags[issue]
        digest = ctx.write_file(TABLE_FILE, lambda p: _write_parquet(columns, p))
        counts = issues.counts()
        ctx.add_output("image_quality", {
            "path": TABLE_FILE, "fingerprint": digest, "rows": len(rows), "checks": list(issues.checks),
            "counts": counts,
            "aligned_to": {"step": data.step_id, "fingerprint": data.entry("table")["fingerprint"],
                           "split": cfg.split},
        })
        report = _write_report(ctx, table, rows, ids, issues)
        ctx.metrics.update({
            "rows": len(rows), "counts": counts,
            "rates": {k: round(v / max(len(rows), 1), 4) for k, v in counts.items()},
            "flagged_any": int(issues.any_issue.sum()),
            "thresholds": threshold_dict(cfg.thresholds, issues.checks),
            "statistics": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in issues.statistics.items()},
            "report": str(ctx.dir / report),
        })
        log.info("image_quality '%s': %s in %d rows; report: %s", ctx.step_id,
                 ", ".join(f"{v} {k}" for k, v in counts.items()), len(rows), ctx.dir / report)

    @classmethod
    def show_in_fiftyone(cls, dataset, step: Input) -> dict[str, Any]:
        """A float field ``<step>_<issue>`` (severity), a list field ``<step>_issues`` and a saved view
        ``<step>_<issue>`` (flagged, most severe first) per checked issue type, from the saved parquet."""
        import pyarrow.parquet as pq
        from fiftyone import ViewField as F

        from curate.fo.database import connect
        from curate.fo.fields import ID_FIELD, field_key, set_field_values
        from curate.fo.views import save_view

        fo = connect()
        entry = step.entry("image_quality")
        checks = list(entry["checks"])
        table = pq.read_table(step.dir / entry["path"]).to_pydict()
        key = field_key(step.step_id)
        in_dataset = set(dataset.values(ID_FIELD))
        rows = [i for i, sid in enumerate(table["id"]) if sid in in_dataset]
        if len(rows) < len(table["id"]):
            log.warning("%d of the %d rows checked by step '%s' are not in the FiftyOne dataset '%s' (another "
                        "table version?); they get no fields", len(table["id"]) - len(rows), len(table["id"]),
                        step.step_id, dataset.name)
        ids = [table["id"][i] for i in rows]
        schema = dataset.get_field_schema()
        fields, views = [], []
        issues_field = f"{key}_issues"
        if issues_field not in schema:
            dataset.add_sample_field(issues_field, fo.ListField, subfield=fo.StringField)
        named = {sid: [] for sid in in_dataset}  # every sample gets a value, so a rerun clears stale ones
        for issue in checks:
            field = f"{key}_{issue}"
            if field not in schema:
                dataset.add_sample_field(field, fo.FloatField)
            scores = dict.fromkeys(in_dataset)
            scores.update({sid: float(table[f"{issue}_score"][i]) for sid, i in zip(ids, rows)})
            set_field_values(dataset, field, scores)
            for sid, i in zip(ids, rows):
                if table[f"is_{issue}_issue"][i]:
                    named[sid].append(issue)
            fields.append(field)
        set_field_values(dataset, issues_field, named)
        for issue in checks:
            view = f"{key}_{issue}"
            save_view(dataset, view, dataset.match(F(issues_field).contains(issue)).sort_by(f"{key}_{issue}",
                                                                                             reverse=True))
            views.append(view)
        return {"fields": [*fields, issues_field], "views": views,
                "flagged": {issue: int(sum(issue in v for v in named.values())) for issue in checks}}


def _write_parquet(columns: dict[str, Any], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({k: pa.array(np.asarray(v).tolist() if np.asarray(v).dtype.kind == "U" else v)
                             for k, v in columns.items()}), path)


def _write_report(ctx: StepContext, table, rows: np.ndarray, ids: np.ndarray, issues: QualityIssues) -> str:
    """``report/index.html``: counts and thresholds, then a grid PNG per flagged issue type (the ``top``
    most severe images, decoded again for the thumbnails only)."""
    from audits.image_quality import threshold_dict
    from audits.report import plot_issue_grid, render_html, thumbnails

    cfg: ImageQualityConfig = ctx.config
    n = len(rows)
    tops = {issue: issues.ranking(issue)[:cfg.top] for issue in issues.checks}
    shown = sorted({int(i) for top in tops.values() for i in top})
    thumbs = dict(zip(shown, thumbnails(table, rows[shown]))) if shown else {}
    counts = issues.counts()
    thresholds = threshold_dict(cfg.thresholds, issues.checks)
    figures = []
    for issue, top in tops.items():
        if not len(top):
            continue
        name = f"{REPORT_DIR}/{issue}.png"
        captions = [f"{_short(ids[i])}\n{issues.scores[issue][i]:.3g}" for i in top]
        ctx.write_file(name, lambda p, top=top, captions=captions: plot_issue_grid(p, [thumbs[int(i)] for i in top],
                                                                                  captions))
        figures.append((f"{issue.replace('_', ' ')}: {counts[issue]} images, the {len(top)} most severe "
                        f"(caption: id, severity)", f"{issue}.png"))
    summary: list[tuple[str, Any]] = [("rows checked", n), ("split", cfg.split or "all"),
                                      ("rows with any issue", int(issues.any_issue.sum()))]
    summary += [(f"{issue.replace('_', ' ')} (severity > {thresholds[issue]:g})",
                 f"{counts[issue]} ({counts[issue] / max(n, 1):.2%})") for issue in issues.checks]
    stats = issues.statistics
    notes = [f"{issue.replace('_', ' ')}: {DESCRIPTIONS[issue]}." for issue in issues.checks]
    if "odd_size_median" in stats:
        notes.append(f"Median area {stats['odd_size_median']:.0f} px; sizes and aspect ratios within "
                     f"{thresholds['odd_min_factor']:g}x of the median are never odd.")
    if "grayscale_share" in stats and not stats["grayscale_checked"]:
        notes.append(f"{stats['grayscale_share']:.0%} of the images are grayscale, more than "
                     f"grayscale_max_share ({thresholds['grayscale_max_share']:g}): none is flagged as grayscale.")
    page = render_html(title=f"Image quality '{ctx.step_id}'", summary=summary, figures=figures, notes=notes)
    index = f"{REPORT_DIR}/index.html"
    digest = ctx.write_file(index, lambda p: p.write_text(page, encoding="utf-8"))
    ctx.add_output("report", {"path": index, "fingerprint": digest})
    return index


def _short(sample_id: str, width: int = 18) -> str:
    return sample_id if len(sample_id) <= width else "..." + sample_id[-(width - 3):]
