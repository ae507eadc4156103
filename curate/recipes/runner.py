"""The runner: executes a validated recipe step by step in its run directory.

A step is skipped when a completed ``step.json`` holds the same cache key: the
resolved config, the content fingerprints its producers recorded for its inputs,
fingerprints of anything it reads from outside the run, the step kind's version
and the recipe seed. Everything else reruns; steps after a failure never run.
The run directory is locked for the duration of a run. Every run ends by writing the run's
``index.html`` (each step's state, headline result, reports and plots), also when a step failed or
the run was interrupted; Ctrl-C inside a step raises :class:`RunInterrupted`, which names it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, Sequence

from curate import __version__, workspace
from curate.config import to_dict
from curate.errors import CurateError, StepFailed, UsageError
from curate.recipes.overview import RunOverview, write_run_index
from curate.recipes.recipe import PlannedStep, Recipe, load_recipe
from curate.execute import executor_record
from curate.steps.base import SHARDS_DIR, Input, Step, StepContext
from curate.threads import apply_threads, prefer_passive_waiting

log = logging.getLogger("curate.run")

RUN_FILE = "run.json"


@dataclass
class StepOutcome:
    id: str
    kind: str
    state: str  # "ran" | "skipped" | "failed"
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    run_dir: Path
    outcomes: list[StepOutcome]
    overview: RunOverview | None = None  # the steps' headlines, reports and next commands; index.html

    def outcome(self, step_id: str) -> StepOutcome:
        return next(o for o in self.outcomes if o.id == step_id)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C while a step ran: still a KeyboardInterrupt, naming the step (a rerun resumes there)."""

    def __init__(self, step_id: str):
        super().__init__(step_id)
        self.step_id = step_id


class Reporter(Protocol):
    def step_started(self, step: PlannedStep) -> None: ...
    def step_finished(self, outcome: StepOutcome) -> None: ...


class LogReporter:
    """Reports through logging; the CLI supplies a richer one."""

    def step_started(self, step: PlannedStep) -> None:
        log.info("running step '%s' (%s)", step.id, step.kind)

    def step_finished(self, outcome: StepOutcome) -> None:
        log.info("step '%s' %s in %.1fs %s", outcome.id, outcome.state, outcome.seconds, outcome.metrics)


def run_dir_for(recipe: Recipe, workdir: str | Path | None = None) -> Path:
    """``<workdir>/<recipe name>``; the workdir defaults to the recipe's, else ``./runs``."""
    base = Path(workdir) if workdir is not None else (recipe.workdir or Path("runs"))
    return (base / recipe.name).resolve()


def cache_key(step: PlannedStep, inputs: dict[str, list[Input]], external: str | None, seed: int) -> str:
    return workspace.json_sha256({
        "kind": step.kind,
        "version": step.step_cls.version,
        "config": to_dict(step.config),
        "inputs": {role: [_producer_fingerprint(i.manifest) for i in items] for role, items in sorted(inputs.items())},
        "external": external,
        "seed": seed,
    })


def _producer_fingerprint(manifest: dict[str, Any]) -> str:
    outputs = manifest.get("outputs", {})
    return workspace.json_sha256({t: e.get("fingerprint") for t, e in sorted(outputs.items())})


def _check_ids(recipe: Recipe, names: Sequence[str]) -> None:
    from curate.registry import did_you_mean

    ids = recipe.ids
    for sid in names:
        if sid not in ids:
            raise UsageError(f"no step '{sid}' in recipe '{recipe.name}'{did_you_mean(sid, ids)}; steps: {', '.join(ids)}")


def _forced(recipe: Recipe, force: Sequence[str], from_step: str | None) -> set[str]:
    ids = recipe.ids
    forced = set(force)
    if from_step:
        forced.update(ids[ids.index(from_step):])
    return forced


def _needed(recipe: Recipe, targets: Sequence[str]) -> set[str]:
    """``targets`` and every step they depend on; all steps when there are no targets."""
    if not targets:
        return set(recipe.ids)
    needed: set[str] = set()
    stack = list(targets)
    while stack:
        sid = stack.pop()
        if sid not in needed:
            needed.add(sid)
            stack.extend(ref for refs in recipe.step(sid).inputs.values() for ref in refs)
    return needed


def _isolate_caches(run_dir: Path, *, progress: bool) -> None:
    """Point library caches into the run directory (only effective before their import)."""
    if not progress:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    cache = run_dir / ".cache"
    if "huggingface_hub" not in sys.modules:
        for var, sub in (("HF_HOME", "hf"), ("HF_HUB_CACHE", "hub"), ("HF_XET_CACHE", "xet")):
            os.environ.setdefault(var, str(cache / sub))
    if "datasets" not in sys.modules:
        os.environ.setdefault("HF_DATASETS_CACHE", str(cache / "datasets"))
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def run_recipe(
    recipe: Recipe | str | Path,
    *,
    workdir: str | Path | None = None,
    overrides: Sequence[str] = (),
    force: Sequence[str] = (),
    from_step: str | None = None,
    only: Sequence[str] = (),
    progress: bool = True,
    reporter: Reporter | None = None,
) -> RunResult:
    """Run the steps of ``recipe`` in order, skipping those whose cache key matches.

    ``only`` restricts the run to those steps and the steps they depend on.
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides=overrides)
    elif overrides:
        raise UsageError("pass overrides together with a recipe path, not with a loaded Recipe")
    reporter = reporter or LogReporter()
    _check_ids(recipe, [*force, *([from_step] if from_step else []), *only])
    forced = _forced(recipe, force, from_step)
    needed = _needed(recipe, only)
    run_dir = run_dir_for(recipe, workdir)
    _isolate_caches(run_dir, progress=progress)
    prefer_passive_waiting()
    outcomes: list[StepOutcome] = []
    threads = _Threads(recipe.defaults.threads)
    with workspace.run_lock(run_dir):
        for path in workspace.remove_stale_writes(run_dir):
            log.info("removed %s, left by a run killed mid-write", path)
        _write_run_file(run_dir, recipe)
        try:
            _run_steps(recipe, run_dir, needed, forced, outcomes, reporter, threads, progress)
        finally:
            threads.restore()
            overview = _write_index(run_dir, outcomes)
    return RunResult(run_dir, outcomes, overview)


def _run_steps(recipe: Recipe, run_dir: Path, needed: set[str], forced: set[str], outcomes: list[StepOutcome],
               reporter: Reporter, threads: _Threads, progress: bool) -> None:
    manifests: dict[str, dict[str, Any]] = {}
    for step in recipe.steps:
        if step.id not in needed:
            continue
        inputs = {role: [Input(ref, run_dir / ref, manifests[ref]) for ref in refs]
                  for role, refs in step.inputs.items()}
        step_dir = run_dir / step.id
        try:
            external = step.step_cls.external_fingerprint(step.config, run_dir=run_dir)
        except CurateError as exc:
            raise UsageError(f"step '{step.id}': {exc}") from exc
        key = cache_key(step, inputs, external, recipe.defaults.seed)
        previous = workspace.read_manifest(step_dir)
        if (step.id not in forced and previous is not None and previous.get("key") == key
                and step.step_cls.is_intact(previous, step_dir)):
            manifests[step.id] = previous
            outcome = StepOutcome(step.id, step.kind, "skipped", previous.get("seconds", 0.0),
                                  previous.get("metrics", {}))
            outcomes.append(outcome)
            reporter.step_finished(outcome)
            continue
        reporter.step_started(step)
        try:
            manifests[step.id] = _run_step(step, inputs, step_dir, run_dir, recipe, key, progress,
                                           threads.apply())
        except KeyboardInterrupt:
            outcomes.append(StepOutcome(step.id, step.kind, "interrupted"))
            raise RunInterrupted(step.id) from None
        except BaseException:
            outcomes.append(StepOutcome(step.id, step.kind, "failed"))
            raise
        outcome = StepOutcome(step.id, step.kind, "ran", manifests[step.id]["seconds"],
                              manifests[step.id]["metrics"])
        outcomes.append(outcome)
        reporter.step_finished(outcome)


class _Threads:
    """The recipe's ``threads``, set once before the first step that runs (a run that skips every step never
    loads torch) and put back when the run ends, so a library caller's own setting survives."""

    def __init__(self, requested: int | str):
        self.requested = requested
        self.record: dict[str, Any] | None = None
        self._previous: int | None = None

    def apply(self) -> dict[str, Any]:
        if self.record is None:
            import torch

            self._previous = torch.get_num_threads()
            self.record = apply_threads(self.requested)
        return self.record

    def restore(self) -> None:
        if self._previous is not None:
            import torch

            torch.set_num_threads(self._previous)


def _write_index(run_dir: Path, outcomes: list[StepOutcome]) -> RunOverview | None:
    """The run's index.html; a failure to write it is logged, never raised over the run's own outcome."""
    try:
        return write_run_index(run_dir, {o.id: o.state for o in outcomes})
    except Exception as exc:  # noqa: BLE001 - the page is a convenience; the run's result stands
        log.warning("could not write %s: %s", run_dir / "index.html", exc)
        return None


def _run_step(step: PlannedStep, inputs: dict[str, list[Input]], step_dir: Path, run_dir: Path,
              recipe: Recipe, key: str, progress: bool, threads: dict[str, Any]) -> dict[str, Any]:
    workspace.invalidate_manifest(step_dir)
    step_dir.mkdir(parents=True, exist_ok=True)
    ctx = StepContext(
        step_id=step.id, kind=step.kind, run_dir=run_dir, dir=step_dir, config=step.config, inputs=inputs,
        seed=recipe.defaults.seed, device=recipe.defaults.device, progress=progress,
        executor_name=recipe.defaults.executor, executor_options={"ray": recipe.defaults.ray}, signature=key,
    )
    started = time.time()
    try:
        execute_step(step.step_cls, ctx)
    except UsageError as exc:
        raise type(exc)(f"step '{step.id}': {exc}") from exc
    except Exception as exc:
        raise StepFailed(step.id, exc) from exc
    seconds = time.time() - started
    shutil.rmtree(step_dir / SHARDS_DIR, ignore_errors=True)  # the outputs hold them now
    ctx.metrics.setdefault("seconds", round(seconds, 3))
    workspace.write_json(step_dir / "metrics.json", ctx.metrics)
    manifest = {
        "id": step.id,
        "kind": step.kind,
        "version": step.step_cls.version,
        "key": key,
        "config": to_dict(step.config),
        "inputs": {role: [{"step": i.step_id, "fingerprint": _producer_fingerprint(i.manifest)} for i in items]
                   for role, items in inputs.items()},
        "outputs": ctx.outputs,
        "files": ctx.files,
        "metrics": ctx.metrics,
        "seed": recipe.defaults.seed,
        "device": ctx.device,
        "threads": threads,
        "executor": {name: executor_record(name, run) for name, run in ctx.executors.items()},
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "curate_version": __version__,
    }
    workspace.write_manifest(step_dir, manifest)
    return manifest


class UndeclaredOutput(RuntimeError):
    """A step kind wrote an artifact type it does not declare in ``produces`` (a bug in the kind)."""


def execute_step(step_cls: type[Step], ctx: StepContext) -> None:
    """Run one step in its context as every run does: the step itself, its results in the run's FiftyOne
    dataset (the one pattern of :mod:`curate.fo.runs`), then the artifact contract: every output type it
    wrote must be declared in its kind's ``produces``, or wiring it in a recipe would fail validation."""
    step_cls().run(ctx)
    if step_cls.shows_in_fiftyone():
        from curate.fo.runs import show_step
        from curate.steps.base import FIFTYONE_RECORD

        ctx.metrics["fiftyone"] = show_step(step_cls, ctx.as_input(), ctx.run_dir)
        ctx.files.append(FIFTYONE_RECORD)
    undeclared = sorted(set(ctx.outputs) - set(step_cls.produces))
    if undeclared:
        raise UndeclaredOutput(
            f"step kind '{ctx.kind}' wrote {', '.join(f'`{t}`' for t in undeclared)} but declares only "
            f"{', '.join(f'`{t}`' for t in step_cls.produces) or 'nothing'} in `produces`; declare every "
            "output type so recipes can wire it")


def _write_run_file(run_dir: Path, recipe: Recipe) -> None:
    workspace.write_json(run_dir / RUN_FILE, {
        "name": recipe.name,
        "recipe": str(recipe.path) if recipe.path else None,
        "recipe_dir": str(recipe.base_dir) if recipe.base_dir else None,
        "steps": [{"id": s.id, "kind": s.kind} for s in recipe.steps],
        "curate_version": __version__,
    })
    workspace.write_text(run_dir / "recipe.yaml", recipe.text)


def run_steps_of_kind(
    run_dir: str | Path,
    kinds: Sequence[str],
    *,
    overrides: Sequence[str] = (),
    force: bool = False,
    progress: bool = True,
    reporter: Reporter | None = None,
) -> RunResult:
    """Run (or rerun with ``force``) the steps of the given kinds in an existing run, with what they need.

    This backs capability commands such as ``curate audit RUN``: the run's own recipe
    (saved at its start) decides the steps and their wiring.
    """
    run_dir, info = require_run(run_dir)
    recipe = load_recipe(run_dir / "recipe.yaml", overrides=overrides, base_dir=info.get("recipe_dir"))
    targets = [s.id for s in recipe.steps if s.kind in kinds]
    if not targets:
        from curate.recipes.bundled import recipes_using

        example = recipes_using(kinds[0])
        raise UsageError(f"run {run_dir} has no {' or '.join(repr(k) for k in kinds)} step; add one to its recipe "
                         f"(`curate steps {kinds[0]}` shows its options"
                         + (f"; the shipped recipe {example[0]} has one" if example else "")
                         + ") and `curate run` it")
    return run_recipe(recipe, workdir=run_dir.parent, only=targets, force=targets if force else (),
                      progress=progress, reporter=reporter)


# --- status and clean ---------------------------------------------------------------


@dataclass
class StepStatus:
    id: str
    kind: str
    state: str  # "done" | "incomplete" | "pending"
    seconds: float | None
    started: str | None
    metrics: dict[str, Any]


def require_run(run_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """The run directory and its ``run.json``; a UsageError when ``run_dir`` is not a run."""
    run_dir = Path(run_dir)
    info_path = run_dir / RUN_FILE
    if not info_path.is_file():
        raise UsageError(f"{run_dir} is not a curate run directory (no {RUN_FILE}); "
                         "pass the folder `curate run` printed, e.g. runs/demo")
    return run_dir, json.loads(info_path.read_text())


def run_status(run_dir: str | Path) -> list[StepStatus]:
    """The state of each step of a run, in recipe order."""
    run_dir, info = require_run(run_dir)
    rows = []
    for s in info["steps"]:
        manifest = workspace.read_manifest(run_dir / s["id"])
        if manifest is not None:
            rows.append(StepStatus(s["id"], s["kind"], "done", manifest.get("seconds"), manifest.get("started"),
                                   manifest.get("metrics", {})))
        else:
            state = "incomplete" if (run_dir / s["id"]).exists() else "pending"
            rows.append(StepStatus(s["id"], s["kind"], state, None, None, {}))
    return rows


def clean_run(run_dir: str | Path) -> Path:
    """Delete a run directory (and what the run registered elsewhere, e.g. its FiftyOne dataset)."""
    run_dir, _ = require_run(run_dir)
    with workspace.run_lock(run_dir):
        if (run_dir / "fiftyone.json").is_file():
            from curate.fo.runs import clean_run as clean_fiftyone

            clean_fiftyone(run_dir)
    shutil.rmtree(run_dir)
    return run_dir
