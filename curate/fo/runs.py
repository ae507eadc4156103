"""A run's FiftyOne dataset: its name, the record at the run root, opening, checks and deletion,
and the one pattern by which steps show their results in it.

The ``fiftyone`` step writes ``<run>/fiftyone.json`` naming the dataset and what it
holds; ``curate app`` and ``curate clean`` read it. The database URI is recorded only
when it came from the recipe (an external URI from the environment stays there, with
its credentials); the record never holds a password.

Steps show results in the App one way (:func:`show_step`): a step kind implements
``Step.show_in_fiftyone(dataset, step)``, which writes fields, views or brain runs from the
step's own saved outputs. The runner calls it right after the step ran, when the run has a
dataset; the ``fiftyone`` step calls it for every completed step of the run once it has
mirrored the table (:func:`show_completed_steps`), so the App is complete whatever the order
of the steps. What each step wrote is recorded in its folder's ``fiftyone.json``; the next
write first removes what that record lists.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from curate import workspace
from curate.errors import UsageError
from curate.fo.database import connect
from curate.steps.base import FIFTYONE_RECORD as STEP_RECORD
from curate.steps.base import outputs_exist

if TYPE_CHECKING:  # pragma: no cover
    import fiftyone as fo

    from curate.steps.base import Input, Step

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


@dataclass(frozen=True)
class RunDataset:
    """The run's FiftyOne dataset and the run record that names it."""

    dataset: "fo.Dataset"
    record: dict[str, Any]

    @property
    def database_uri(self) -> str | None:
        return self.record.get("database_uri")


def open_run_dataset(run_dir: str | os.PathLike, *, required: bool = False) -> RunDataset | None:
    """The run's FiftyOne dataset, or None when no ``fiftyone`` step has completed in the run.

    A recorded dataset that no longer exists is None too, unless ``required`` (a step that reads
    what reviewers stored there, e.g. their tags): then it is a one-line usage error.
    """
    record = read_run_record(run_dir)
    if record is None:
        return None
    fo = connect(record.get("database_uri"))
    if not fo.dataset_exists(record["dataset"]):
        if required:
            raise UsageError(f"the FiftyOne dataset '{record['dataset']}' named in {Path(run_dir) / RUN_RECORD} is "
                             "gone, and the review tags with it; rerun the `fiftyone` step, or set `fiftyone: false`")
        return None
    return RunDataset(fo.load_dataset(record["dataset"]), record)


def remove_outputs(dataset: "fo.Dataset", record: dict[str, Any] | None, *, keep: dict[str, list[str]] | None = None) -> None:
    """Delete the fields, brain runs and saved views ``record`` lists (when it wrote to this dataset),
    except those in ``keep`` (same keys): a rewrite then leaves nothing stale behind."""
    if not record or record.get("dataset") != dataset.name:
        return
    keep = keep or {}
    schema = dataset.get_field_schema()
    for name in set(record.get("fields", [])) - set(keep.get("fields", [])):
        if name in schema:
            dataset.delete_sample_field(name)
    brain_runs = set(dataset.list_brain_runs())
    for key in set(record.get("brain_keys", [])) - set(keep.get("brain_keys", [])):
        if key in brain_runs:
            dataset.delete_brain_run(key)
    for name in set(record.get("views", [])) - set(keep.get("views", [])):
        if dataset.has_saved_view(name):
            dataset.delete_saved_view(name)


def read_step_record(step_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(step_dir) / STEP_RECORD
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def show_step(step_cls: "type[Step]", step: "Input", run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """Show one step's results in the run's dataset (if the run has one and the step's config does not
    say ``fiftyone: false``); record what was written in the step's folder and return it (None: nothing)."""
    previous = read_step_record(step.dir)
    run = open_run_dataset(run_dir) if step.manifest.get("config", {}).get("fiftyone", True) else None
    if run is None:
        workspace.write_json(Path(step.dir) / STEP_RECORD, {"dataset": None})
        return None
    remove_outputs(run.dataset, previous)
    written = step_cls.show_in_fiftyone(run.dataset, step) or {}
    record = {"dataset": run.dataset.name, "database_uri": run.database_uri,
              **{key: list(written.get(key, [])) for key in ("fields", "views", "brain_keys")}}
    workspace.write_json(Path(step.dir) / STEP_RECORD, record)  # what a later check or rewrite needs
    return {**written, **record}


def show_completed_steps(run_dir: str | os.PathLike, *, exclude: str) -> dict[str, Any]:
    """Call :func:`show_step` for every completed step of the run whose kind shows results in the App
    (the ``fiftyone`` step does, after mirroring); returns ``{step id: what it wrote}``."""
    import logging

    from curate.steps.base import Input, create_step

    run_file = Path(run_dir) / "run.json"  # the runner's list of the recipe's steps
    info = json.loads(run_file.read_text()) if run_file.is_file() else {}
    shown: dict[str, Any] = {}
    for entry in info.get("steps", []):
        if entry["id"] == exclude:
            continue
        step_dir = Path(run_dir) / entry["id"]
        manifest = workspace.read_manifest(step_dir)
        if manifest is None:
            continue
        step_cls = create_step(manifest["kind"])
        if not step_cls.shows_in_fiftyone() or not outputs_exist(manifest, step_dir):
            continue
        try:
            shown[entry["id"]] = show_step(step_cls, Input(entry["id"], step_dir, manifest), run_dir)
        except (ValueError, KeyError) as exc:  # e.g. a step over a table version that is not mirrored
            logging.getLogger(__name__).warning("step '%s' is not shown in the App: %s", entry["id"], exc)
    return shown

