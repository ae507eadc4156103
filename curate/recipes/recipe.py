"""Recipes: YAML -> a validated plan of typed step configs, with every error at once.

A recipe has ``name``, optional ``workdir``, ``description`` and ``defaults``, and
``steps``: a list of ``{id, uses, with, inputs}``. Validation checks the shape,
step kinds, each step's config (its own dataclass), the artifact wiring between
steps and each kind's cross-field rules, and reports every problem with its file,
line, step and field before anything runs. ``--set step.field=value`` overrides go
through the same validator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from curate.config import CommandLineValue, ConfigValueError, option, parse_config
from curate.errors import Problem, RecipeError, UnknownName
from curate.execute.ray import RayOptions
from curate.recipes.yaml_lines import line_of, load_value, load_yaml
from curate.registry import did_you_mean
from curate.steps.base import STEPS, Step, create_step

TOP_KEYS = ("name", "description", "workdir", "defaults", "steps")
STEP_KEYS = ("id", "uses", "with", "inputs")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True, kw_only=True)
class Defaults:
    """Recipe-wide settings every step sees."""

    device: Literal["auto", "cpu", "cuda"] = option("auto", help="where models run")
    seed: int = option(0, ge=0, help="base seed; part of every step's cache key")
    executor: str = option("local", help="how batch work (predict, embed, relabel) runs: local (this process) or "
                                         "ray (a Ray cluster, see `ray`); a step's own `executor` overrides it")
    ray: RayOptions = option(default_factory=RayOptions, help="the ray executor's cluster, workers and shards")
    threads: int | Literal["auto"] = option("auto", help="torch CPU threads; auto: every CPU this process may use "
                                                         "(see curate.threads)")

    def __post_init__(self) -> None:
        from curate.execute import executor_problem

        if self.threads != "auto" and self.threads < 1:
            raise ConfigValueError("threads", f"must be 'auto' or a whole number >= 1, got {self.threads}")

        problem = executor_problem(self.executor)
        if problem:
            raise ConfigValueError("executor", problem)


@dataclass
class PlannedStep:
    id: str
    kind: str
    step_cls: type[Step]
    config: Any
    inputs: dict[str, list[str]]
    line: int | None = None


@dataclass
class Recipe:
    name: str
    steps: list[PlannedStep]
    defaults: Defaults = field(default_factory=Defaults)
    workdir: Path | None = None
    description: str = ""
    path: Path | None = None
    text: str = ""
    base_dir: Path | None = None  # where its relative input paths resolve

    def step(self, step_id: str) -> PlannedStep:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.steps]


@dataclass(frozen=True)
class Override:
    """One ``--set a.b.c=value`` from the command line."""

    path: tuple[str, ...]
    value: Any
    text: str


def parse_override(text: str) -> Override:
    key, sep, raw = text.partition("=")
    parts = tuple(p for p in key.strip().split("."))
    if not sep or len(parts) < 2 or not all(parts):
        raise RecipeError(Problem(f"expected STEP.FIELD=VALUE (e.g. train.epochs=3), got {text!r}", file="--set"))
    try:
        value = load_value(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return Override(parts, CommandLineValue(value) if isinstance(value, str) else value, text)


def load_recipe(path: str | Path, *, overrides: Sequence[str | Override] = (), base_dir: str | Path | None = None
                ) -> Recipe:
    """Read and validate a recipe file; raises :class:`RecipeError` listing every problem.

    Relative input paths in it resolve against its folder (or ``base_dir``, e.g. for a run's saved
    copy of a recipe that lived elsewhere)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RecipeError(Problem("recipe file not found", file=str(path))) from None
    except OSError as exc:
        raise RecipeError(Problem(f"cannot read recipe: {exc.strerror}", file=str(path))) from None
    return parse_recipe(text, filename=str(path), overrides=overrides, path=path,
                        base_dir=Path(base_dir) if base_dir is not None else None)


def parse_recipe(
    text: str,
    *,
    filename: str = "<recipe>",
    overrides: Sequence[str | Override] = (),
    path: Path | None = None,
    base_dir: Path | None = None,
) -> Recipe:
    data, lines = load_yaml(text, filename=filename)
    ovs = [parse_override(o) if isinstance(o, str) else o for o in overrides]
    if base_dir is None:
        base_dir = path.resolve().parent if path is not None else Path.cwd()
    return _Validator(filename, data, lines, ovs, base_dir).build(text=text, path=path)


class _Validator:
    def __init__(self, filename: str, data: Any, lines: dict, overrides: list[Override], base_dir: Path):
        self.filename = filename
        self.base_dir = base_dir
        self.data = data
        self.lines = lines
        self.overrides = overrides
        self.overridden: dict[tuple, Override] = {}
        self.problems: list[Problem] = []

    # -- helpers --
    def problem(self, message: str, path: tuple = (), *, step: str | None = None, field: str | None = None) -> None:
        if path in self.overridden:
            self.problems.append(Problem(message, file=f"--set {self.overridden[path].text}", step=step, field=field))
            return
        self.problems.append(Problem(message, file=self.filename, line=line_of(self.lines, path), step=step, field=field))

    def _apply_overrides(self, steps: list) -> dict[str, Any]:
        defaults = self.data.get("defaults") if isinstance(self.data.get("defaults"), dict) else {}
        index = {s["id"]: i for i, s in enumerate(steps) if isinstance(s, dict) and isinstance(s.get("id"), str)}
        for ov in self.overrides:
            head, rest = ov.path[0], ov.path[1:]
            if head == "defaults":
                target, base = defaults, ("defaults",)
                self.data["defaults"] = defaults
            elif head in index:
                step = steps[index[head]]
                if not isinstance(step.get("with"), dict):
                    step["with"] = {}
                target, base = step["with"], ("steps", index[head], "with")
            else:
                names = [k for k in index if isinstance(k, str)]
                self.problems.append(Problem(f"no step '{head}' in the recipe{did_you_mean(str(head), names)}",
                                             file=f"--set {ov.text}"))
                continue
            for part in rest[:-1]:
                if not isinstance(target.get(part), dict):
                    target[part] = {}
                target = target[part]
                base = base + (part,)
            target[rest[-1]] = ov.value
            self.overridden[base + (rest[-1],)] = ov
        return defaults

    # -- main --
    def build(self, *, text: str, path: Path | None) -> Recipe:
        data = self.data
        if not isinstance(data, dict):
            raise RecipeError(Problem("a recipe must be a mapping with `name` and `steps`", file=self.filename,
                                      line=line_of(self.lines, ()) or 1))
        for key in data:
            if key not in TOP_KEYS:
                self.problem(f"unknown top-level key '{key}'{did_you_mean(str(key), list(TOP_KEYS))}; "
                             f"allowed: {', '.join(TOP_KEYS)}", (key,))
        name = data.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            self.problem(f"`name` must be a folder-safe name (letters, digits, '_', '-', '.'), got {name!r}", ("name",))
        steps_raw = data.get("steps")
        if not isinstance(steps_raw, list) or not steps_raw:
            self.problem("`steps` must be a non-empty list of steps", ("steps",))
            steps_raw = []
        defaults_raw = self._apply_overrides(steps_raw)
        defaults, problems = parse_config(Defaults, defaults_raw, base_dir=self.base_dir)
        for fld, msg in problems:
            key = fld.split(".")[0] if fld else None
            self.problem(msg, ("defaults", key) if key else ("defaults",), field=f"defaults.{fld}" if fld else "defaults")
        workdir = data.get("workdir")
        if workdir is not None and not isinstance(workdir, str):
            self.problem(f"`workdir` must be a path string, got {workdir!r}", ("workdir",))
            workdir = None
        planned = self._steps(steps_raw)
        if self.problems:
            raise RecipeError(self.problems)
        return Recipe(
            name=name,
            steps=planned,
            defaults=defaults,
            workdir=Path(workdir) if workdir else None,
            description=str(data.get("description") or ""),
            path=path,
            text=text,
            base_dir=self.base_dir,
        )

    def _steps(self, steps_raw: list) -> list[PlannedStep]:
        planned: list[PlannedStep] = []
        produced: dict[str, tuple[str, ...]] = {}  # step id -> artifact types
        seen: set[str] = set()
        for i, raw in enumerate(steps_raw):
            base = ("steps", i)
            if not isinstance(raw, dict):
                self.problem(f"each step must be a mapping with `id` and `uses`, got {raw!r}", base)
                continue
            sid = raw.get("id")
            label = sid if isinstance(sid, str) else f"#{i + 1}"
            for key in raw:
                if key not in STEP_KEYS:
                    self.problem(f"unknown key '{key}'{did_you_mean(str(key), list(STEP_KEYS))}; "
                                 f"allowed: {', '.join(STEP_KEYS)}", base + (key,), step=label)
            if not isinstance(sid, str) or not NAME_RE.match(sid):
                self.problem(f"`id` must be a folder-safe name, got {sid!r}", base + ("id",), step=label)
                sid = None
            elif sid in seen:
                self.problem(f"duplicate step id '{sid}'", base + ("id",), step=label)
            kind = raw.get("uses")
            step_cls = None
            if not isinstance(kind, str):
                self.problem(f"`uses` must name a step kind ({', '.join(STEPS.names())}), got {kind!r}",
                             base + ("uses",) if "uses" in raw else base, step=label)
            else:
                try:
                    step_cls = create_step(kind)
                except UnknownName as exc:
                    self.problem(str(exc), base + ("uses",), step=label, field="uses")
            config = None
            with_raw = raw.get("with", {}) or {}
            if step_cls is not None:
                config = self._config(step_cls, with_raw, base, label)
            wired = self._inputs(raw.get("inputs", {}) or {}, step_cls, produced, base, label)
            if step_cls is not None and config is not None and wired is not None:
                for fld, msg in step_cls.check(config, wired):
                    path = base + (("with",) + tuple(fld.split(".")) if fld and not fld.startswith("inputs")
                                   else ("inputs",))
                    self.problem(msg, path, step=label, field=f"with.{fld}" if fld and not fld.startswith("inputs")
                                 else fld)
            if sid:
                seen.add(sid)
                produced[sid] = step_cls.produces if step_cls else ()
                if step_cls is not None and config is not None and wired is not None:
                    planned.append(PlannedStep(sid, kind, step_cls, config, wired, line_of(self.lines, base)))
        return planned

    def _config(self, step_cls: type[Step], with_raw: Any, base: tuple, label: str) -> Any:
        if not isinstance(with_raw, Mapping):
            self.problem(f"`with` must be a mapping, got {with_raw!r}", base + ("with",), step=label, field="with")
            return None
        try:
            cls = step_cls.config_class(with_raw)
        except ConfigValueError as exc:
            self.problem(str(exc), base + ("with", exc.field), step=label, field=f"with.{exc.field}")
            return None
        config, problems = parse_config(cls, with_raw, base_dir=self.base_dir)
        for fld, msg in problems:
            parts = tuple(re.split(r"[.\[\]]+", fld.strip("]"))) if fld else ()
            parts = tuple(int(p) if p.isdigit() else p for p in parts)
            self.problem(msg, base + ("with",) + parts, step=label, field=f"with.{fld}" if fld else "with")
        return config

    def _inputs(self, inputs_raw: Any, step_cls: type[Step] | None, produced: dict[str, tuple[str, ...]],
                base: tuple, label: str) -> dict[str, list[str]] | None:
        path = base + ("inputs",)
        if not isinstance(inputs_raw, Mapping):
            self.problem("`inputs` must map input roles to step ids", path, step=label, field="inputs")
            return None
        if step_cls is None:
            return None
        roles = step_cls.inputs
        wired: dict[str, list[str]] = {}
        ok = True
        for role, ref in inputs_raw.items():
            rpath = path + (role,)
            if role not in roles:
                known = ", ".join(roles) or "none"
                self.problem(f"unknown input role '{role}'{did_you_mean(str(role), list(roles))}; "
                             f"step kind '{step_cls.kind}' takes: {known}", rpath, step=label, field=f"inputs.{role}")
                ok = False
                continue
            spec = roles[role]
            refs = ref if isinstance(ref, list) else [ref]
            if not refs or not all(isinstance(r, str) for r in refs):
                self.problem(f"expected a step id{' or a list of step ids' if spec.many else ''}, got {ref!r}",
                             rpath, step=label, field=f"inputs.{role}")
                ok = False
                continue
            if len(refs) > 1 and not spec.many:
                self.problem(f"takes one step, got {len(refs)}", rpath, step=label, field=f"inputs.{role}")
                ok = False
            for r in refs:
                if r not in produced:
                    self.problem(f"step '{r}' is not defined before this step{did_you_mean(r, list(produced))}",
                                 rpath, step=label, field=f"inputs.{role}")
                    ok = False
                elif not set(produced[r]) & set(spec.types):
                    made = ", ".join(produced[r]) or "nothing"
                    self.problem(f"needs {' or '.join(spec.types)}, but step '{r}' produces {made}",
                                 rpath, step=label, field=f"inputs.{role}")
                    ok = False
            wired[role] = refs
        for role, spec in roles.items():
            if not spec.optional and role not in wired:
                self.problem(f"missing required input '{role}' ({' or '.join(spec.types)})", path if "inputs" in
                             (self.data["steps"][base[1]] or {}) else base, step=label, field=f"inputs.{role}")
                ok = False
        return wired if ok else None
