"""The step contract: what a recipe step kind declares and what it receives.

A step kind is a :class:`Step` subclass registered under a name in :data:`STEPS`
(built-ins and third-party packages alike, through the ``curate.steps`` entry-point
group). It declares its config dataclass, the artifact types each input role
accepts, the artifact types it produces, and a ``version`` bumped whenever its
semantics change (part of the cache key). ``run`` reads its inputs and writes its
outputs through the :class:`StepContext`; it holds no algorithm itself.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping

from curate import artifacts, workspace
from curate.registry import Registry

log = logging.getLogger("curate.steps")

SHARDS_DIR = ".shards"
"""Where an executor keeps a step's finished output shards until the step completes (then removed)."""

FIFTYONE_RECORD = "fiftyone.json"
"""What a step wrote into the run's FiftyOne dataset (dataset, fields, plots, views), in its folder."""


@dataclass(frozen=True)
class Role:
    """An input role: the artifact types it accepts, and whether it takes several steps."""

    types: tuple[str, ...]
    many: bool = False
    optional: bool = False
    help: str = ""


class Step:
    """Base class of every step kind."""

    kind: ClassVar[str] = ""
    version: ClassVar[int] = 1
    summary: ClassVar[str] = ""
    Config: ClassVar[type]
    inputs: ClassVar[Mapping[str, Role]] = {}
    produces: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def config_class(cls, raw: Mapping[str, Any]) -> type:
        """The config class for this raw ``with`` mapping (override to dispatch on a field)."""
        return cls.Config

    @classmethod
    def config_variants(cls) -> dict[str, type]:
        """Every config class this kind accepts, keyed by what selects it (for listings)."""
        return {"": cls.Config}

    @classmethod
    def check(cls, config: Any, wired: Mapping[str, list[str]]) -> list[tuple[str | None, str]]:
        """Extra rules across config and wiring, checked at validation: ``[(field, message)]``."""
        return []

    @classmethod
    def external_fingerprint(cls, config: Any, *, run_dir: Path) -> str | None:
        """Fingerprint of what the step reads that no earlier step produced, or None.

        Examples: a user's image folder, or reviewer tags in the run's FiftyOne dataset.
        It is part of the cache key, so a changed folder or review reruns the step.
        """
        return None

    @classmethod
    def is_intact(cls, manifest: Mapping[str, Any], step_dir: Path) -> bool:
        """Whether a completed step's outputs still exist (checked before skipping it): its files, and
        the FiftyOne dataset, fields, plots and views it recorded in ``fiftyone.json`` if it wrote one."""
        if not outputs_exist(manifest, step_dir):
            return False
        record = Path(step_dir) / FIFTYONE_RECORD
        if FIFTYONE_RECORD not in manifest.get("files", []) and not record.is_file():
            return True
        from curate.fo.runs import recorded_outputs_intact

        return recorded_outputs_intact(record)

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str | None:
        """The step's main result in a few words, from the metrics it recorded (the end-of-run summary and
        the run's index page show it): a result such as a held-out accuracy, never a config value echoed
        back. None shows nothing; a missing metric (an older manifest) shows nothing too."""
        return None

    @classmethod
    def show_in_fiftyone(cls, dataset: Any, step: "Input") -> dict[str, Any] | None:
        """Write this step's results into the run's FiftyOne dataset from its own saved outputs.

        Returns what was written (``fields``, ``views``, ``brain_keys`` and counts) for the step's
        ``fiftyone.json`` record. Kinds that show nothing in the App leave this as it is; those that do
        override it and are called through :func:`curate.fo.runs.show_step` (never directly), right
        after they run and again whenever the ``fiftyone`` step (re)mirrors the run.
        """
        raise NotImplementedError

    @classmethod
    def shows_in_fiftyone(cls) -> bool:
        return cls.show_in_fiftyone.__func__ is not Step.show_in_fiftyone.__func__  # type: ignore[attr-defined]

    def run(self, ctx: "StepContext") -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def outputs_exist(manifest: Mapping[str, Any], step_dir: Path) -> bool:
    """Whether every output file a step manifest lists is still in its folder."""
    return all((Path(step_dir) / e["path"]).exists() for e in manifest.get("outputs", {}).values() if "path" in e)


STEPS: Registry[type[Step]] = Registry("step kind", entry_point_group="curate.steps")


def create_step(kind: str) -> type[Step]:
    cls = STEPS.get(kind)
    if not cls.kind:
        cls.kind = kind
    return cls


@dataclass
class Input:
    """A completed earlier step wired to a role: its folder and its manifest."""

    step_id: str
    dir: Path
    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    def entry(self, type_: str) -> dict[str, Any]:
        outputs = self.manifest.get("outputs", {})
        if type_ not in outputs:
            raise KeyError(f"step '{self.step_id}' produced no `{type_}` (it produced: {', '.join(outputs) or 'nothing'})")
        return outputs[type_]

    def has(self, type_: str) -> bool:
        return type_ in self.manifest.get("outputs", {})

    def table(self):
        return artifacts.load_table(self.dir, self.entry("table"))

    def array(self, type_: str, *, mmap: bool = False):
        """``(values, ids)`` of an array artifact such as ``pred_probs`` or ``embeddings``."""
        return artifacts.load_array(self.dir, self.entry(type_), mmap=mmap)

    def model(self):
        return artifacts.load_model(self.dir, self.entry("model"))

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest.get("metrics", {})


@dataclass
class StepContext:
    """Everything a running step may touch: config, inputs, and writers into its own folder."""

    step_id: str
    kind: str
    run_dir: Path
    dir: Path
    config: Any
    inputs: dict[str, list[Input]]
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    executor_name: str = "local"
    executor_options: Mapping[str, Any] = field(default_factory=dict)
    signature: str = ""
    executors: dict[str, Callable[..., Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    # --- inputs ---
    def input(self, role: str) -> Input:
        items = self.inputs.get(role, [])
        if len(items) != 1:
            raise KeyError(f"role `{role}` of step '{self.step_id}' has {len(items)} inputs, expected one")
        return items[0]

    def maybe_input(self, role: str) -> Input | None:
        items = self.inputs.get(role, [])
        return items[0] if items else None

    def inputs_of(self, role: str) -> list[Input]:
        return list(self.inputs.get(role, []))

    # --- outputs ---
    def path(self, relative: str) -> Path:
        return workspace.inside(self.dir, relative, what="output path")

    def save_table(self, table, *, type_: str = "table") -> dict[str, Any]:
        entry = artifacts.save_table(self.dir, table)
        self.outputs[type_] = entry
        return entry

    def save_array(self, type_: str, values, ids, *, table: Input, split: str | None = None) -> dict[str, Any]:
        aligned = {"step": table.step_id, "fingerprint": table.entry("table")["fingerprint"], "split": split}
        entry = artifacts.save_array(self.dir, type_, values, ids, aligned_to=aligned)
        self.outputs[type_] = entry
        return entry

    def save_model(self, model) -> dict[str, Any]:
        entry = artifacts.save_model(self.dir, model)
        self.outputs["model"] = entry
        return entry

    def write_file(self, relative: str, writer: Callable[[Path], Any]) -> str:
        """Write a side file (plot, report page, CSV) atomically; returns its sha256."""
        digest = workspace.atomic_write(self.path(relative), writer)
        self.files.append(relative)
        return digest

    def write_json(self, relative: str, obj: Any) -> str:
        digest = workspace.write_json(self.path(relative), obj)
        self.files.append(relative)
        return digest

    def add_output(self, type_: str, entry: dict[str, Any]) -> None:
        self.outputs[type_] = entry

    @contextlib.contextmanager
    def scratch(self) -> Iterator[Path]:
        """A temporary folder inside this step's folder (e.g. for ``datasets`` cache files), removed after."""
        folder = self.path(".scratch")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def as_input(self) -> Input:
        """This running step as an :class:`Input` (what later steps and FiftyOne writers see of it)."""
        from curate.config import to_dict

        manifest = {"id": self.step_id, "kind": self.kind, "config": to_dict(self.config), "outputs": self.outputs,
                    "files": self.files, "metrics": self.metrics}
        return Input(self.step_id, self.dir, manifest)

    def executor(self, name: str | None = None) -> Callable[..., Any]:
        """The executor of this step's batch work: ``name`` (the step's own ``executor``) or the recipe's,
        with the recipe's options for it; its resumable shards go to ``.shards/`` in the step's folder, keyed
        by the step's cache key (``signature``), and what it did goes into step.json."""
        from curate.execute import create_executor

        name = name or self.executor_name
        if name not in self.executors:
            self.executors[name] = create_executor(name, options=self.executor_options.get(name),
                                                   shard_dir=self.path(SHARDS_DIR), signature=self.signature)
        return self.executors[name]

    def torch_device(self) -> str:
        from curate.learn.device import resolve_device

        return resolve_device(self.device)
