"""Toy step kinds for recipe and runner tests: fast, no torch (registered on import)."""

from dataclasses import dataclass
from typing import Literal

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


PNG_1x1 = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415478da63f8"
                        "ffff3f0005fe02fea7d6a4a60000000049454e44ae426082")


@dataclass(frozen=True, kw_only=True)
class ReportConfig:
    note: str = option("fine", help="text the headline repeats (escaped everywhere)")


class ToyReport(Step):
    """Writes an HTML report and a plot, and declares a headline (metrics carry a config echo too)."""

    summary = "Write a report page and a plot."
    Config = ReportConfig
    inputs = {"values": Role(("pred_probs",), optional=True)}
    produces = ("report",)

    @classmethod
    def headline(cls, metrics):
        return f"score {metrics['score']:.0%} ({metrics['note']})"

    def run(self, ctx: StepContext) -> None:
        ctx.write_file("plots/curve.png", lambda p: p.write_bytes(PNG_1x1))
        digest = ctx.write_file("report.html", lambda p: p.write_text("<html>report</html>"))
        ctx.add_output("report", {"path": "report.html", "fingerprint": digest})
        ctx.metrics.update(score=0.5, note=ctx.config.note, database_uri=None)


@dataclass(frozen=True, kw_only=True)
class WaitConfig:
    marker: str = option("", help="file written once the step runs (empty: none)")
    seconds: float = option(0.0, ge=0, help="sleep this long, then raise KeyboardInterrupt if `interrupt`")
    interrupt: bool = option(True, help="raise KeyboardInterrupt (as Ctrl-C would) after sleeping")


class ToyWait(Step):
    """Records torch's thread count, then waits (for a real SIGINT) or raises KeyboardInterrupt."""

    summary = "Record threads, then wait or get interrupted."
    Config = WaitConfig
    inputs = {"after": Role(("pred_probs",), optional=True)}
    produces = ("pred_probs",)

    def run(self, ctx: StepContext) -> None:
        import time

        import torch

        ctx.metrics["torch_threads"] = torch.get_num_threads()
        if ctx.config.marker:
            with open(ctx.config.marker, "w") as fh:
                fh.write("running")
        time.sleep(ctx.config.seconds)
        if ctx.config.interrupt:
            raise KeyboardInterrupt
        digest = ctx.write_file("values.npy", lambda p: np.save(p, np.zeros(1)))
        ctx.add_output("pred_probs", {"path": "values.npy", "fingerprint": digest})


@dataclass(frozen=True, kw_only=True)
class MarkupConfig:
    source_datasets: list[str] = option(default_factory=list, help="Hub ids, e.g. [cifar10]; index rows as [i]")
    policy: Literal["prune_by_noise_rate", "prune_by_class", "both_prune_by_noise_rate_and_class"] = option(
        "prune_by_noise_rate", help="a field with long choices")


class ToyMarkup(Step):
    summary = "Brackets [bold]in[/bold] text: [cifar10]."
    Config = MarkupConfig
    produces = ("report",)


STEPS.register("toy_numbers", ToyNumbers)
STEPS.register("toy_scale", ToyScale)
STEPS.register("toy_fail", ToyFail)
STEPS.register("toy_report", ToyReport)
STEPS.register("toy_wait", ToyWait)
STEPS.register("toy_markup", ToyMarkup)

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
