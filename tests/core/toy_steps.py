"""Toy step kinds for recipe and runner tests: fast, no torch (registered on import)."""

from dataclasses import dataclass

import numpy as np

from curate.config import option
from curate.steps.base import STEPS, Role, Step, StepContext


@dataclass(frozen=True, kw_only=True)
class NumbersConfig:
    n: int = option(4, gt=0, help="how many numbers")
    parts: int = option(1, gt=0, help="files to write (more writes for fault tests)")


class ToyNumbers(Step):
    summary = "Write n numbers."
    Config = NumbersConfig
    produces = ("pred_probs",)

    def run(self, ctx: StepContext) -> None:
        values = np.arange(ctx.config.n, dtype=np.float32) + ctx.seed
        for part in range(ctx.config.parts):
            ctx.write_json(f"part{part}.json", values.tolist())
        digest = ctx.write_file("values.npy", lambda p: np.save(p, values))
        ctx.add_output("pred_probs", {"path": "values.npy", "fingerprint": digest})
        ctx.metrics["total"] = float(values.sum())


@dataclass(frozen=True, kw_only=True)
class ScaleConfig:
    scale: float = option(1.0, gt=0)


class ToyScale(Step):
    summary = "Scale numbers from an earlier step."
    Config = ScaleConfig
    inputs = {"values": Role(("pred_probs",)), "extra": Role(("pred_probs",), many=True, optional=True)}
    produces = ("report",)

    def run(self, ctx: StepContext) -> None:
        inp = ctx.input("values")
        values = np.load(inp.dir / inp.entry("pred_probs")["path"]) * ctx.config.scale
        digest = ctx.write_file("scaled.npy", lambda p: np.save(p, values))
        ctx.add_output("report", {"path": "scaled.npy", "fingerprint": digest})
        ctx.metrics["total"] = float(values.sum())


class ToyFail(Step):
    summary = "Always fails."
    Config = ScaleConfig
    produces = ("report",)

    def run(self, ctx: StepContext) -> None:
        raise RuntimeError("boom")


STEPS.register("toy_numbers", ToyNumbers)
STEPS.register("toy_scale", ToyScale)
STEPS.register("toy_fail", ToyFail)

TOY_RECIPE = """\
name: toy
steps:
  - id: numbers
    uses: toy_numbers
    with:
      n: 5
      parts: 3
  - id: scaled
    uses: toy_scale
    inputs: {values: numbers}
    with:
      scale: 2.0
"""
