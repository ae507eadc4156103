"""Helpers for the audit step tests: a real CIFAR-10 table with planted label noise, step inputs
saved the way earlier steps save them, and a hand-built StepContext."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from curate import artifacts, config
from curate.recipes.runner import execute_step
from curate.steps.base import Input, StepContext

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def symmetric_noise(labels: np.ndarray, *, rate: float, seed: int, num_classes: int = 10):
    """(noisy labels, flipped mask): each label flipped with probability ``rate`` to another class."""
    rng = np.random.default_rng(seed)
    flipped = rng.random(len(labels)) < rate
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, num_classes, flipped.sum())) % num_classes
    return noisy, flipped


def cifar_table(shared_data: Path, labels: np.ndarray, *, n: int | None = None):
    """The first ``n`` CIFAR-10 test images of shared/data as a sample table with the given labels."""
    from curate.data import make_table

    images = np.load(shared_data / "cifar10" / "test" / "images.npy", mmap_mode="r")
    n = len(labels) if n is None else n
    return make_table(ids=[f"cifar10/test/{i:05d}" for i in range(n)], images=np.asarray(images[:n]),
                      labels=labels[:n], class_names=CIFAR_CLASSES, splits="test")


def save_table_input(run_dir: Path, table, step_id: str = "data") -> Input:
    entry = artifacts.save_table(run_dir / step_id, table)
    return Input(step_id, run_dir / step_id, {"kind": "source", "outputs": {"table": entry}})


def save_array_input(run_dir: Path, data: Input, type_: str, values, ids, *, step_id: str, kind: str) -> Input:
    aligned = {"step": data.step_id, "fingerprint": data.entry("table")["fingerprint"], "split": None}
    entry = artifacts.save_array(run_dir / step_id, type_, np.asarray(values), np.asarray(ids), aligned_to=aligned)
    return Input(step_id, run_dir / step_id, {"kind": kind, "outputs": {type_: entry}})


def run_step(step_cls, run_dir: Path, step_id: str, inputs: dict[str, list[Input]], **cfg) -> StepContext:
    """Run one step like the runner does (without the cache), and return its context."""
    ctx = StepContext(step_id=step_id, kind=step_cls.kind, run_dir=run_dir, dir=run_dir / step_id,
                      config=config.from_mapping(step_cls.Config, cfg), inputs=inputs, progress=False)
    ctx.dir.mkdir(parents=True, exist_ok=True)
    execute_step(step_cls, ctx)
    return ctx


def as_input(ctx: StepContext) -> Input:
    """A finished step as the next step's input."""
    return Input(ctx.step_id, ctx.dir, {"kind": ctx.kind, "outputs": ctx.outputs, "metrics": ctx.metrics})


def write_run_record(run_dir: Path, dataset_name: str) -> None:
    """What the `fiftyone` step leaves at the run root: the run's dataset."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "fiftyone.json").write_text(json.dumps({"dataset": dataset_name, "step": "browse",
                                                       "database_uri": None, "fields": [], "views": []}))
