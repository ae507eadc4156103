"""The dataset card (``README.md``): Hub YAML metadata and a body saying how the data was made.

The YAML has ``license``, ``task_categories``, ``size_categories``, ``source_datasets``,
``pretty_name``, ``tags`` and the ``configs`` that map each split to its Parquet shards.
The body lists the splits and columns, the recipe (name, curate version, seed, steps, the
recipe text itself), the method and settings of distilled or synthetic rows (read from
their provenance columns), the accuracy metrics of the steps that made the exported table
(its ancestors through the manifests' inputs: a model trained on another branch of the recipe
says nothing about this data), and known limitations. ``source_datasets`` and ``license``
left at their defaults are filled from the run's source steps when they name a Hub dataset.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from curate import workspace

if TYPE_CHECKING:  # pragma: no cover
    import datasets

CORE_COLUMNS = ("id", "image", "label", "split", "set", "path")
_COLUMN_NOTES = {
    "id": "stable sample id (the join key of every curate artifact)",
    "image": "the image",
    "label": "class label (ClassLabel; names in the metadata)",
    "split": "split name",
    "set": "`real`, `distilled` or `synthetic`",
    "path": "source file the image was read from",
}
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))
_MADE_SETS = ("distilled", "synthetic")
UNSET_LICENSE = "other"
"""The export step's default license: the card then takes the source's, when it records one."""
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_DEMO_SOURCE = ("cifar10", "unknown")  # the bundled sample is CIFAR-10, which has no formal license


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` bucket of a row count."""
    return next((name for limit, name in _SIZES if rows < limit), "n>1B")


@dataclass(frozen=True)
class RunFacts:
    """What a card says about the run that made the data."""

    recipe_name: str
    curate_version: str
    seed: int | None = None
    recipe_text: str | None = None
    steps: Sequence[dict[str, Any]] = field(default_factory=list)  # {id, kind, inputs, metrics}
    source_datasets: Sequence[str] = ()  # Hub ids the source steps read
    source_license: str | None = None  # the license the source steps' data records, if any


def run_facts(run_dir: str | Path, *, completed_only: bool = False, upstream_of: str | None = None) -> RunFacts:
    """Read a run's ``run.json``, ``recipe.yaml`` and ``step.json`` files (``completed_only``: leave out steps
    that have not completed; ``upstream_of``: keep only that step and the steps it was made from)."""
    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    recipe = run_dir / "recipe.yaml"
    manifests = {s["id"]: workspace.read_manifest(run_dir / s["id"]) or {} for s in info.get("steps", [])}
    keep = _ancestors(manifests, upstream_of) if upstream_of is not None else set(manifests)
    steps, seed, sources, licenses = [], None, [], []
    for s in info.get("steps", []):
        manifest = manifests[s["id"]]
        if (completed_only and not manifest) or s["id"] not in keep:
            continue
        seed = manifest.get("seed", seed)
        inputs = {role: [i["step"] for i in items] for role, items in manifest.get("inputs", {}).items()}
        steps.append({"id": s["id"], "kind": s["kind"], "metrics": manifest.get("metrics", {}), "inputs": inputs})
        if s["kind"] == "source" and manifest:
            hub_ids, license = _source_provenance(manifest, run_dir / s["id"])
            sources += hub_ids
            licenses += [license] if license else []
    return RunFacts(recipe_name=info["name"], curate_version=info.get("curate_version", "unknown"), seed=seed,
                    recipe_text=recipe.read_text() if recipe.is_file() else None, steps=steps,
                    source_datasets=tuple(dict.fromkeys(sources)),
                    source_license=licenses[0] if len(set(licenses)) == 1 else None)


def _ancestors(manifests: dict[str, dict[str, Any]], step: str) -> set[str]:
    """``step`` and every step its inputs came from, transitively (through the ``inputs`` of the manifests)."""
    seen: set[str] = set()
    stack = [step]
    while stack:
        sid = stack.pop()
        if sid in seen:
            continue
        seen.add(sid)
        stack += [i["step"] for items in manifests.get(sid, {}).get("inputs", {}).values() for i in items]
    return seen


def _source_provenance(manifest: dict[str, Any], step_dir: Path) -> tuple[list[str], str | None]:
    """(Hub dataset ids, license) of a completed source step: the bundled CIFAR-10 sample, or an ``hf``
    source whose ``path`` is a Hub id (not a local folder), with the license its saved table records."""
    config = manifest.get("config", {})
    if config.get("kind") == "demo":
        return [_DEMO_SOURCE[0]], _DEMO_SOURCE[1]
    path = str(config.get("path") or "")
    hub_ids = [path] if config.get("kind") == "hf" and _HUB_ID.match(path) and not Path(path).exists() else []
    entry = manifest.get("outputs", {}).get("table", {})
    info_file = step_dir / entry.get("path", "table") / "dataset_info.json"
    try:
        license = json.loads(info_file.read_text()).get("license") or None
    except (OSError, ValueError):
        license = None
    return hub_ids, license


def card_text(
    dataset_dict: "datasets.DatasetDict",
    *,
    facts: RunFacts,
    license: str,
    task_categories: Sequence[str],
    source_datasets: Sequence[str] = (),
    pretty_name: str | None = None,
    description: str | None = None,
    limitations: str | None = None,
    shards: dict[str, list[str]] | None = None,
    nodes: int = 1,
) -> str:
    """The README.md text: YAML metadata between ``---`` lines, then the markdown body.

    ``license`` left at ``"other"`` and an empty ``source_datasets`` take the run's source facts."""
    from huggingface_hub import DatasetCard, DatasetCardData

    if license == UNSET_LICENSE and facts.source_license:
        license = facts.source_license
    source_datasets = list(source_datasets) or list(facts.source_datasets)
    rows = sum(len(ds) for ds in dataset_dict.values())
    name = pretty_name or f"{facts.recipe_name} (curate)"
    configs = [{"config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}-*"} for s in dataset_dict]}]
    data = DatasetCardData(license=license, task_categories=list(task_categories),
                           size_categories=[size_category(rows)], source_datasets=list(source_datasets),
                           pretty_name=name, tags=["curate"], configs=configs)
    body = [f"# {name}", ""]
    if description:
        body += [description.strip(), ""]
    body += _contents(dataset_dict, shards, nodes) + _columns(dataset_dict) + _made(facts) \
        + _made_sets(dataset_dict) + _evaluation(facts) + _limitations(dataset_dict, limitations)
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n"))


def _contents(dataset_dict, shards, nodes: int) -> list[str]:
    from curate.export.dataset import shard_rows

    lines = ["## Contents", "", "| split | rows | by set | Parquet shards | rows per shard |",
             "|---|---:|---|---:|---|"]
    for split, ds in dataset_dict.items():
        sets = _counts(ds["set"]) if "set" in ds.column_names else {}
        by_set = ", ".join(f"{k}: {v}" for k, v in sets.items())
        count = len((shards or {}).get(split, []))
        sizes = sorted(set(shard_rows(len(ds), count))) if count else []
        lines.append(f"| {split} | {len(ds)} | {by_set} | {count} | {' or '.join(map(str, sizes))} |")
    lines.append("")
    if nodes > 1:
        lines += [f"Each split has a multiple of {nodes} shards in row order, so "
                  f"`split_dataset_by_node(load_dataset(\"parquet\", data_files=..., streaming=True)[split], "
                  f"rank=r, world_size={nodes})` gives each of {nodes} nodes whole shards.", ""]
    return lines


def _columns(dataset_dict) -> list[str]:
    first = next(iter(dataset_dict.values()))
    lines = ["## Columns", "", "| column | type | meaning |", "|---|---|---|"]
    for column, feature in first.features.items():
        note = _COLUMN_NOTES.get(column, "soft labels or scores from the run's step of this name"
                                 if type(feature).__name__ in ("List", "LargeList") else "provenance")
        lines.append(f"| `{column}` | `{feature}` | {note} |")
    names = getattr(first.features.get("label"), "names", None)
    if names:
        lines += ["", f"Classes ({len(names)}): " + ", ".join(f"`{n}`" for n in names[:50])
                  + (", ..." if len(names) > 50 else "")]
    return lines + [""]


def _made(facts: RunFacts) -> list[str]:
    lines = ["## How it was made", "",
             f"Built with curate {facts.curate_version} by the recipe `{facts.recipe_name}`"
             + (f" (seed {facts.seed})." if facts.seed is not None else "."), "",
             "| step | kind | inputs |", "|---|---|---|"]
    for s in facts.steps:
        inputs = "; ".join(f"{role}: {', '.join(refs)}" for role, refs in s["inputs"].items())
        lines.append(f"| `{s['id']}` | {s['kind']} | {inputs} |")
    if facts.recipe_text:
        lines += ["", "<details><summary>The recipe</summary>", "", "```yaml", facts.recipe_text.rstrip(), "```",
                  "", "</details>"]
    return lines + [""]


def _made_sets(dataset_dict) -> list[str]:
    """Per distilled/synthetic set: rows, and the distinct values of each provenance column among them."""
    lines = []
    first = next(iter(dataset_dict.values()))
    parts = [ds for ds in dataset_dict.values() if "set" in ds.column_names]
    provenance = [c for c, f in first.features.items() if c not in CORE_COLUMNS and type(f).__name__ == "Value"]
    for made in _MADE_SETS:
        masks = [np.asarray(ds["set"], dtype=str) == made for ds in parts]
        count = int(sum(m.sum() for m in masks))
        if not count:
            continue
        settings = []
        for column in provenance:
            values = [v for ds, m in zip(parts, masks) for v, keep in zip(ds[column], m) if keep and v is not None]
            distinct = list(dict.fromkeys(values))
            if distinct:
                settings.append(f"`{column}`: " + ", ".join(str(v) for v in distinct[:5])
                                + (f" (+{len(distinct) - 5} more)" if len(distinct) > 5 else ""))
        lines += [f"## {made.capitalize()} rows", "", f"{count} rows are {made}, not photographs."]
        lines += (["Method and settings (from the provenance columns):", ""] + [f"- {s}" for s in settings]
                  if settings else ["No provenance columns were recorded for them."])
        lines.append("")
    return lines


def _evaluation(facts: RunFacts) -> list[str]:
    rows = [(s["id"], k, v) for s in facts.steps for k, v in s["metrics"].items()
            if "accuracy" in k and isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not rows:
        return []
    return ["## Evaluation (from the run)", "", "| step | metric | value |", "|---|---|---:|"] \
        + [f"| `{s}` | {k} | {v:.4f} |" for s, k, v in rows] + [""]


def _limitations(dataset_dict, extra: str | None) -> list[str]:
    first = next(iter(dataset_dict.values()))
    notes = []
    sets = set().union(*(set(ds["set"]) for ds in dataset_dict.values() if "set" in ds.column_names))
    if sets & set(_MADE_SETS):
        notes.append("Distilled and synthetic images are generated: do not treat them as real photographs, "
                     "and report results on real held-out images.")
    soft = [c for c, f in first.features.items() if type(f).__name__ in ("List", "LargeList")]
    if soft:
        notes.append("Soft labels and scores (" + ", ".join(f"`{c}`" for c in soft)
                     + ") come from models and inherit their errors and biases.")
    if extra:
        notes.append(extra.strip())
    if not notes:
        return []
    return ["## Limitations", ""] + [f"- {n}" for n in notes] + [""]


def _counts(values) -> dict[str, int]:
    uniq, counts = np.unique(np.asarray(values, dtype=str), return_counts=True)
    return dict(zip(uniq.tolist(), counts.tolist()))
