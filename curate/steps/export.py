"""`export`: a table version as a Hugging Face dataset, with a dataset card; optionally pushed to the Hub.

Writes ``dataset/`` (``DatasetDict.save_to_disk``: ``datasets.load_from_disk``) and ``hub/``
(``README.md`` + ``data/<split>-*.parquet``: ``datasets.load_dataset("parquet", ...)`` or
``load_dataset(<hub folder>)``). Wired ``pred_probs``/``embeddings`` steps become
``Sequence(float32)`` columns named after the step. With ``push_to_hub`` the ``hub/`` folder
is uploaded; the token comes from ``HF_TOKEN`` or the Hugging Face login, never from curate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from curate.config import option
from curate.steps.base import Role, Step, StepContext


@dataclass(frozen=True, kw_only=True)
class PushOptions:
    repo_id: str = option(help="Hub dataset repo, e.g. 'me/cifar10-curated'")
    private: bool = option(True, help="create the repo private")


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    splits: list[str] | None = option(None, help="splits to export, in this order (null: all)")
    license: str = option("other", help="license id for the card (e.g. mit, cc-by-4.0; 'other': the source's "
                                        "license when it records one)")
    task_categories: list[str] = option(default_factory=lambda: ["image-classification"],
                                        help="Hub task categories")
    source_datasets: list[str] = option(default_factory=list, help="Hub ids of the source datasets, e.g. [cifar10] "
                                                                 "(empty: the Hub ids the run's sources read)")
    pretty_name: str | None = option(None, help="card title (null: '<recipe> (curate)')")
    description: str | None = option(None, help="a paragraph for the top of the card")
    limitations: str | None = option(None, help="known limitations to add to the card")
    rows_per_shard: int = option(20_000, gt=0, help="rows per Parquet shard (at most)")
    nodes: int = option(1, gt=0, help="shards per split are a multiple of this, so that "
                                      "datasets.distributed.split_dataset_by_node gives each of this many nodes "
                                      "whole shards and the same rows (within one per shard)")
    push_to_hub: PushOptions | None = option(None, help="upload the export: {repo_id, private}")


class ExportStep(Step):
    summary = "Hugging Face dataset (Image + ClassLabel, soft labels, provenance): Parquet, save_to_disk, card, push."
    version = 2
    Config = ExportConfig
    inputs = {
        "data": Role(("table",), help="the table version to export"),
        "columns": Role(("pred_probs", "embeddings"), many=True, optional=True,
                        help="array steps to add as Sequence(float32) columns named after the step"),
    }
    produces = ("export",)

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        splits = ", ".join(f"{name} {n:,}" for name, n in metrics["splits"].items())
        pushed = f", pushed to {metrics['pushed_to']}" if metrics.get("pushed_to") else ""
        return f"{metrics['rows']:,} rows ({splits}){pushed}"

    def run(self, ctx: StepContext) -> None:
        from curate import workspace
        from curate.export import build_dataset_dict, card_text, push_folder, run_facts, shard_files, write_export
        from curate.fo.fields import field_key

        cfg: ExportConfig = ctx.config
        table = ctx.input("data").table()
        columns = {field_key(inp.step_id): inp.array("pred_probs" if inp.has("pred_probs") else "embeddings")
                   for inp in ctx.inputs_of("columns")}
        dataset_dict = build_dataset_dict(table, columns=columns, splits=cfg.splits)
        facts = run_facts(ctx.run_dir, completed_only=True, upstream_of=ctx.input("data").step_id)
        card = card_text(dataset_dict, facts=facts, license=cfg.license,
                         task_categories=cfg.task_categories, source_datasets=cfg.source_datasets,
                         pretty_name=cfg.pretty_name, description=cfg.description, limitations=cfg.limitations,
                         shards=shard_files(dataset_dict, cfg.rows_per_shard, nodes=cfg.nodes), nodes=cfg.nodes)
        shards = write_export(dataset_dict, ctx.dir, card_text=card, rows_per_shard=cfg.rows_per_shard,
                              nodes=cfg.nodes, progress=ctx.progress)
        hub = ctx.path("hub")
        splits = {s: len(ds) for s, ds in dataset_dict.items()}
        ctx.add_output("export", {"path": "hub", "dataset": "dataset", "card": "hub/README.md",
                                  "fingerprint": workspace.tree_sha256(hub), "rows": sum(splits.values()),
                                  "splits": splits, "shards": shards})
        ctx.metrics.update(rows=sum(splits.values()), splits=splits, columns=list(next(iter(
            dataset_dict.values())).column_names), pushed_to=None)
        if cfg.push_to_hub is not None:
            ctx.metrics["pushed_to"] = push_folder(hub, cfg.push_to_hub.repo_id, private=cfg.push_to_hub.private,
                                                   local_copy=hub)
