"""The audit report: PNG figures (matplotlib, Agg) and one self-contained static HTML page.

Each ``plot_*`` function writes one PNG at a path it is given (so a caller can write it
atomically); :func:`render_html` returns the page, which links the PNGs by relative file name
and embeds the thumbnails of the top issues as base64, with inline CSS and no script. With many
classes the figures show the ``max_classes`` classes with the most issues.
:func:`write_audit_report` composes the page and figures of one audit step into its folder.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from audits.mistake_model import suggestion_agreement, suggestion_note
from audits.mistakes import CATEGORIES, SEVERITIES

if TYPE_CHECKING:  # pragma: no cover
    from audits.audit import AuditResult
    from curate.steps.base import StepContext

MAX_CLASSES = 30
_BLUE, _RED = "#4C72B0", "#C44E52"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png")
    _pyplot().close(fig)


def focus_classes(issue_counts: np.ndarray, *, max_classes: int = MAX_CLASSES) -> np.ndarray:
    """Class indices to show: all when there are few, else the ``max_classes`` with the most issues
    (in class order)."""
    k = len(issue_counts)
    if k <= max_classes:
        return np.arange(k)
    return np.sort(np.argsort(-np.asarray(issue_counts), kind="stable")[:max_classes])


def plot_confusion(path: Path, confusion: np.ndarray, class_names: Sequence[str], *, classes: np.ndarray) -> None:
    """Given label (rows) by predicted class (columns): counts, coloured by each row's share."""
    plt = _pyplot()
    sub = np.asarray(confusion)[np.ix_(classes, classes)]
    names = [class_names[i] for i in classes]
    share = sub / np.maximum(sub.sum(axis=1, keepdims=True), 1)
    size = max(4.5, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size), dpi=110)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if len(classes) <= 20:
        for (i, j), v in np.ndenumerate(sub):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("given label")
    ax.set_title("Confusion matrix (colour: share of the given label's row)")
    _save(fig, path)


def plot_issue_grid(path: Path, images: np.ndarray, captions: Sequence[str], *, columns: int = 8) -> None:
    """Images (N, H, W, 3) uint8 in a grid, each with its caption (given -> suggested, score)."""
    plt = _pyplot()
    n = len(images)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.55 * columns, 1.8 * rows), dpi=110, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, caption in zip(axes.ravel(), images, captions):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(caption, fontsize=6)
    if n == 0:
        axes[0, 0].text(0, 0.5, "no issues", fontsize=10)
    _save(fig, path)


def plot_class_rates(path: Path, rates: np.ndarray, class_names: Sequence[str], *, classes: np.ndarray) -> None:
    """Issue rate per given class (bars)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.35 * len(classes) + 2), 3.4), dpi=110)
    bars = ax.bar([class_names[i] for i in classes], np.asarray(rates)[classes], color=_RED)
    if len(classes) <= 20:
        ax.bar_label(bars, labels=[f"{r:.0%}" for r in np.asarray(rates)[classes]], fontsize=7)
    ax.set_ylabel("share of the class flagged")
    ax.set_title("Label issues per class")
    ax.tick_params(axis="x", rotation=60, labelsize=7)
    for label in ax.get_xticklabels():
        label.set_ha("right")
    _save(fig, path)


def plot_categories(path: Path, categories: Mapping[str, int], severities: Mapping[str, int]) -> None:
    """Suggested mistake categories and severities of the flagged rows (two bar charts)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=110, gridspec_kw={"width_ratios": [5, 3]})
    for ax, names, counts, colour, title in (
            (left, CATEGORIES, categories, _BLUE, "Suggested category"),
            (right, SEVERITIES, severities, _RED, "Suggested severity")):
        values = [int(counts.get(name, 0)) for name in names]
        bars = ax.barh([n.replace("_", " ") for n in names], values, color=colour)
        ax.bar_label(bars, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.tick_params(axis="y", labelsize=7)
    _save(fig, path)


def png_base64(image: np.ndarray) -> str:
    """A uint8 (H, W, 3) image as a ``data:image/png;base64,...`` URI."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
img.fig{max-width:100%;border:1px solid #eee}img.thumb{width:64px;height:64px;image-rendering:pixelated}
.note{color:#666;font-size:.85em}
.warning{background:#fdecea;border:1px solid #C44E52;color:#7a1c1f;padding:.6em .9em}
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, (int, np.integer)):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, raw_columns: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{v}</td>" if j in raw_columns else _cell(v) for j, v in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(
    *,
    title: str,
    summary: Sequence[tuple[str, Any]],
    figures: Sequence[tuple[str, str]],
    top_issues: Sequence[Mapping[str, Any]] | None = None,
    class_rows: Sequence[Sequence[Any]] | None = None,
    notes: Sequence[str] = (),
    warnings: Sequence[str] = (),
) -> str:
    """The report page.

    ``warnings`` open the page, above the summary (e.g. pred_probs near chance: the issues are noise);
    ``summary``: (name, value) rows; ``figures``: (heading, relative PNG file name);
    ``top_issues``: dicts with ``thumbnail`` (data URI), ``id``, ``given``, ``suggested``,
    ``score``, ``category``, ``severity``; ``class_rows``: (class, rows, issues, rate) rows.
    Pages without label issues (e.g. image quality) leave the last two out (None).
    """
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             *(f'<p class="warning"><strong>Warning:</strong> {html.escape(w)}</p>' for w in warnings),
             "<h2>Summary</h2>", _table(["", "value"], [(k, v) for k, v in summary])]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in notes]
    for heading, filename in figures:
        parts.append(f"<h2>{html.escape(heading)}</h2>"
                     f'<img class="fig" src="{html.escape(filename)}" alt="{html.escape(heading)}">')
    if top_issues is not None:
        rows = [(f'<img class="thumb" src="{t["thumbnail"]}" alt="">', t["id"], t["given"], t["suggested"],
                 float(t["score"]), t["category"], t["severity"]) for t in top_issues]
        parts += ["<h2>Top issues (lowest label quality first)</h2>",
                  _table(["image", "id", "given", "suggested", "score", "suggested category", "suggested severity"],
                         rows, raw_columns=(0,)) if rows else "<p>No label issues were flagged.</p>"]
    if class_rows is not None:
        parts += ["<h2>Per class</h2>", _table(["class", "rows", "issues", "issue rate"], class_rows)]
    parts.append("</body></html>")
    return "\n".join(parts)


REPORT_DIR = "report"
_CATEGORIZER_NAMES = {"fitted": "model fitted to human-labelled ImageNet mistakes",
                      "rules": "rules (uncalibrated)"}


def write_audit_report(ctx: "StepContext", *, table, rows: np.ndarray, ids: np.ndarray, names: Sequence[str],
                       result: "AuditResult", sources: str, warnings: Sequence[str] = ()) -> str:
    """Write the audit's figures and ``report/index.html`` into the step folder; returns the page's path.

    ``rows`` are the table rows of the audited ``ids`` (for thumbnails); ``sources`` names the
    table and pred_probs steps; ``warnings`` head the page.
    """
    cfg = ctx.config
    issues = result.issues
    top = issues.ranking[:cfg.top_issues]
    thumbs = thumbnails(table, rows[top])
    classes = focus_classes(result.issue_counts)
    figures = [("Confusion matrix", "confusion.png"), ("Issue rate per class", "class_rates.png"),
               ("Suggested categories and severities", "categories.png"), ("Top issues", "top_issues.png")]
    summary = result.summary()
    d = REPORT_DIR
    ctx.write_file(f"{d}/confusion.png", lambda p: plot_confusion(p, result.confusion, names, classes=classes))
    ctx.write_file(f"{d}/class_rates.png", lambda p: plot_class_rates(p, result.per_class_issue_rate, names,
                                                                        classes=classes))
    ctx.write_file(f"{d}/categories.png", lambda p: plot_categories(p, summary["categories"],
                                                                      summary["severities"]))
    captions = [f"{names[result.labels[i]]} -> {names[issues.suggested_label[i]]}\n{issues.scores[i]:.2g}"
                for i in top]
    ctx.write_file(f"{d}/top_issues.png", lambda p: plot_issue_grid(p, thumbs, captions))
    top_rows = [{"thumbnail": png_base64(t), "id": ids[i], "given": names[result.labels[i]],
                 "suggested": names[issues.suggested_label[i]], "score": float(issues.scores[i]),
                 "category": result.category[i], "severity": result.severity[i]} for t, i in zip(thumbs, top)]
    pct = lambda x: f"{x:.2%}"  # noqa: E731
    agreement = suggestion_agreement(summary["categorizer"])
    rows_summary = [
        ("audited rows", summary["rows"]), ("label issues", summary["issues"]),
        ("issue rate", pct(summary["issue_rate"])),
        ("estimated noise rate (confident joint)", pct(summary["estimated_noise_rate"])),
        ("accuracy of pred_probs against the given labels", pct(summary["accuracy"])),
        ("multi-label candidates", summary["multi_label_candidates"]),
        *([("k-NN outliers", summary["outliers"]),
           ("near-duplicate label conflicts", summary["near_duplicate_conflicts"])] if "outliers" in summary
          else []),
        ("class imbalance (largest / smallest class)", round(summary["imbalance_ratio"], 3)),
        ("class balance (normalised entropy)", round(summary["normalized_entropy"], 3)),
        ("rule / score", f"{cfg.filter_by} / {cfg.score}"),
        ("class-pair signal for suggested categories", summary["class_pair_signal"]),
        ("suggested categories and severities by", _CATEGORIZER_NAMES[summary["categorizer"]]),
        ("suggested category", agreement["category"]),
        ("suggested severity", agreement["severity"]),
        ("table / pred_probs", sources),
    ]
    class_rows = [(names[k], int(result.class_counts[k]), int(result.issue_counts[k]),
                   pct(float(result.per_class_issue_rate[k]))) for k in range(len(names))]
    notes = [f"{suggestion_note(summary['categorizer'])} Use them to sort the review; check them in the App."]
    page = render_html(title=f"Label audit '{ctx.step_id}'", summary=rows_summary, figures=figures,
                       top_issues=top_rows, class_rows=class_rows, notes=notes, warnings=warnings)
    index = f"{d}/index.html"
    digest = ctx.write_file(index, lambda p: p.write_text(page, encoding="utf-8"))
    ctx.add_output("report", {"path": index, "fingerprint": digest})
    return index


def thumbnails(table, rows: np.ndarray, *, max_side: int = 96) -> list[np.ndarray]:
    """Decoded images of ``rows``, shrunk to at most ``max_side`` pixels (kept as they are when smaller)."""
    from PIL import Image

    from curate.data import decode_images
    from curate.errors import UsageError

    try:
        images = list(decode_images(table, rows))
    except UsageError:  # images of different sizes: decode the few report images one by one
        images = [decode_images(table, [int(row)])[0] for row in rows]
    out = []
    for image in images:
        if max(image.shape[:2]) > max_side:
            pil = Image.fromarray(image)
            pil.thumbnail((max_side, max_side))
            image = np.asarray(pil)
        out.append(image)
    return out

