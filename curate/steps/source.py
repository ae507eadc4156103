"""`source`: load a registered data source into the first version of the sample table."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from curate.config import ConfigValueError
from curate.steps.base import Step, StepContext

SKIPPED_FILE = "skipped.txt"


class SourceStep(Step):
    summary = "Load a data source (demo, imagefolder, hf, npz) into the sample table."
    version = 2
    produces = ("table",)

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        splits = ", ".join(f"{name} {n:,}" for name, n in metrics["splits"].items())
        skipped = f"; {metrics['skipped']:,} unreadable skipped ({SKIPPED_FILE})" if metrics.get("skipped") else ""
        return f"{metrics['rows']:,} rows, {metrics['classes']} classes ({splits}){skipped}"

    @classmethod
    def config_class(cls, raw: Mapping[str, Any]) -> type:
        from curate.data import SOURCES, source_config_class

        kind = raw.get("kind")
        if not isinstance(kind, str):
            raise ConfigValueError("kind", f"expected one of {', '.join(SOURCES.names())}, got {kind!r}")
        try:
            return source_config_class(kind)
        except KeyError as exc:
            raise ConfigValueError("kind", str(exc).strip("'\"")) from None

    @classmethod
    def config_variants(cls) -> dict[str, type]:
        from curate.data import SOURCES, source_config_class

        return {f"kind: {name}": source_config_class(name) for name in SOURCES.names()}

    @classmethod
    def check(cls, config: Any, wired: Mapping[str, list[str]]) -> list[tuple[str | None, str]]:
        """Input paths must exist at validation time (relative ones were resolved against the recipe's folder)."""
        problems = []
        for field in dataclasses.fields(config):
            value = getattr(config, field.name)
            local = isinstance(value, Path) or (field.metadata.get("path") and isinstance(value, str)
                                                and value.startswith(("/", "~", ".")))
            if local and not Path(value).expanduser().exists():
                problems.append((field.name, f"'{value}' does not exist (relative paths resolve against the "
                                             "recipe file's folder; on the command line, against the current one)"))
        return problems

    @classmethod
    def external_fingerprint(cls, config: Any, *, run_dir: Path) -> str | None:
        """Names, sizes and mtimes of the source files: cheap, and changes when they do."""
        from curate.data import source_fingerprint

        return source_fingerprint(config)

    def run(self, ctx: StepContext) -> None:
        from curate.data import load_source

        skipped: list[tuple[str, str]] = []
        table = load_source(ctx.config, cache_dir=ctx.run_dir / ".cache", progress=ctx.progress, skipped=skipped)
        if skipped:
            ctx.write_file(SKIPPED_FILE, lambda p: p.write_text("".join(f"{path}\t{why}\n" for path, why in skipped),
                                                                encoding="utf-8"))
        ctx.metrics["skipped"] = len(skipped)
        ctx.save_table(table)
        splits: dict[str, int] = {}
        for s in table["split"]:
            splits[s] = splits.get(s, 0) + 1
        ctx.metrics.update(rows=len(table), classes=len(table.features["label"].names), splits=splits)
