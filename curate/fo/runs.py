"""A run's FiftyOne dataset: its name, the record at the run root, checks and deletion.

The ``fiftyone`` step writes ``<run>/fiftyone.json`` naming the dataset and what it
holds; ``curate app`` and ``curate clean`` read it. The database URI is recorded only
when it came from the recipe (an external URI from the environment stays there, with
its credentials); the record never holds a password.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from curate import workspace
from curate.errors import UsageError
from curate.fo.database import connect

RUN_RECORD = "fiftyone.json"


def dataset_name_for_run(recipe_name: str, run_dir: str | os.PathLike) -> str:
    """``curate-<recipe>-<8 hex of the resolved run dir>``: stable per run dir, distinct across run dirs."""
    slug = re.sub(r"[^a-z0-9]+", "-", recipe_name.lower()).strip("-")[:40] or "run"
    digest = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:8]
    return f"curate-{slug}-{digest}"


def write_run_record(run_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    workspace.write_json(Path(run_dir) / RUN_RECORD, record)


def read_run_record(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's FiftyOne record, or None when no ``fiftyone`` step completed in it."""
    path = Path(run_dir) / RUN_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}); rerun the `fiftyone` step") from None


def missing_outputs(record: dict[str, Any], *, database_uri: str | None = None) -> list[str]:
    """What a record promises but the database lacks (dataset, fields, brain runs, saved views)."""
    fo = connect(database_uri)
    name = record["dataset"]
    if not fo.dataset_exists(name):
        return [f"dataset '{name}'"]
    dataset = fo.load_dataset(name)
    schema = dataset.get_field_schema()
    brain_runs = set(dataset.list_brain_runs())
    missing = [f"field '{f}'" for f in record.get("fields", []) if f not in schema]
    missing += [f"brain run '{k}'" for k in record.get("brain_keys", []) if k not in brain_runs]
    missing += [f"saved view '{v}'" for v in record.get("views", []) if not dataset.has_saved_view(v)]
    if len(dataset) != record.get("samples", len(dataset)):
        missing.append(f"{record['samples']} samples (found {len(dataset)})")
    return missing


def delete_run_dataset(name: str, *, database_uri: str | None = None) -> bool:
    """Delete the dataset ``name`` (for ``curate clean``); False when it did not exist."""
    fo = connect(database_uri)
    if not fo.dataset_exists(name):
        return False
    fo.delete_dataset(name)
    return True


def clean_run(run_dir: str | os.PathLike) -> str | None:
    """Delete the FiftyOne dataset recorded for ``run_dir``; returns its name, or None if there was none."""
    record = read_run_record(run_dir)
    if record is None:
        return None
    delete_run_dataset(record["dataset"], database_uri=record.get("database_uri"))
    return record["dataset"]


def recorded_outputs_intact(record_path: str | os.PathLike) -> bool:
    """Whether what a step recorded in its FiftyOne record (dataset, fields, plots, views) still exists.

    ``Step.is_intact`` calls this for steps that wrote a record, so the runner rebuilds, rather
    than skips, a step whose FiftyOne outputs (or the record itself) were deleted.
    """
    import logging

    path = Path(record_path)
    if not path.is_file():
        return False
    record = json.loads(path.read_text())
    if record.get("dataset") is None:
        return True
    missing = missing_outputs(record, database_uri=record.get("database_uri"))
    if missing:
        logging.getLogger(__name__).warning("FiftyOne outputs recorded in %s are gone (%s); rebuilding", path,
                                            ", ".join(missing[:3]))
    return not missing
