"""`compare`: one table and one bar chart of a metric across several steps (held-out accuracy).

A step that trained several seeds reports its runs (``<metric>_runs``) or the half-width of
the 95% interval of their mean (``<metric>_ci95``); it is shown as mean +- interval, with
error bars and its number of runs. A step with one run is labelled "1 run": one number
says nothing about how much another seed would move it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from curate.config import option
from curate.steps.base import Role, Step, StepContext


@dataclass(frozen=True, kw_only=True)
class CompareConfig:
    metric: str = option("accuracy", help="metric key read from each input step's metrics")
    title: str = option("Held-out accuracy", help="chart title")


@dataclass(frozen=True, kw_only=True)
class Bar:
    """One compared step: its metric (the mean over runs), the 95% half-width if known, and the run count."""

    step: str
    kind: str
    value: float
    ci95: float | None = None
    runs: int | None = None

    @property
    def note(self) -> str:
        """What the bar is: "1 run", "n=3 runs", or "interval" when only the half-width was reported."""
        if self.ci95 is None:
            return "1 run"
        return f"n={self.runs} runs" if self.runs else "interval"


def read_bar(step: str, kind: str, metrics: Mapping[str, Any], metric: str) -> Bar:
    """The :class:`Bar` of one step from its metrics: ``metric``, and ``metric_runs`` / ``metric_ci95`` if any."""
    from curate.errors import UsageError
    from curate.stats import summarize

    if metrics.get(metric) is None:
        raise UsageError(f"step '{step}' has no metric '{metric}' (it has: {', '.join(metrics) or 'none'})")
    runs = metrics.get(f"{metric}_runs")
    ci95 = metrics.get(f"{metric}_ci95")
    if ci95 is None and runs and len(runs) > 1:
        ci95 = summarize(runs)["ci95"]
    return Bar(step=step, kind=kind, value=float(metrics[metric]), ci95=None if ci95 is None else float(ci95),
               runs=len(runs) if runs else None)


class CompareStep(Step):
    summary = ("Compare a metric (held-out accuracy) of several train/predict steps, with 95% intervals over "
               "seeds: CSV table + bar chart PNG.")
    version = 2
    Config = CompareConfig
    inputs = {"runs": Role(("model", "pred_probs"), many=True, help="steps whose metric to compare")}
    produces = ("report",)

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        scores = {k: v for k, v in metrics.items() if k != "seconds" and isinstance(v, (int, float))}
        intervals = {f"{step}_ci95" for step in scores}  # "<step>_ci95" beside "<step>"
        return ", ".join(f"{step} {value:.4g}" + (f" ± {scores[step + '_ci95']:.2g}" if step + "_ci95" in scores
                                                   else "")
                         for step, value in scores.items() if step not in intervals)

    def run(self, ctx: StepContext) -> None:
        cfg: CompareConfig = ctx.config
        bars = [read_bar(inp.step_id, inp.kind, inp.metrics, cfg.metric) for inp in ctx.inputs_of("runs")]
        csv = f"step,kind,{cfg.metric},{cfg.metric}_ci95,runs\n" + "".join(
            f"{b.step},{b.kind},{b.value:.6f},{'' if b.ci95 is None else f'{b.ci95:.6f}'},{b.runs or 1}\n"
            for b in bars)
        ctx.write_file("compare.csv", lambda p: p.write_text(csv))
        digest = ctx.write_file("compare.png", lambda p: save_bar_chart(p, bars, metric=cfg.metric, title=cfg.title))
        ctx.add_output("report", {"path": "compare.png", "fingerprint": digest, "table": "compare.csv"})
        for b in bars:
            ctx.metrics[b.step] = round(b.value, 4)
            if b.ci95 is not None:
                ctx.metrics[f"{b.step}_ci95"] = round(b.ci95, 4)


def bar_chart(bars: list[Bar], *, metric: str, title: str):
    """A ``matplotlib.figure.Figure``: one bar per step, error bars where an interval is known.

    Step ids wrap onto several lines under their bar, with the run count below, and the title
    wraps to the figure's width, so all text stays inside the figure.
    """
    from matplotlib.figure import Figure

    from curate.plots import wrap

    share = metric == "accuracy"
    width = max(4.5, 1.4 * len(bars) + 1.5)
    fig = Figure(figsize=(width, 4.0), dpi=120, layout="constrained")
    ax = fig.subplots()
    x = range(len(bars))
    tops = [b.value + (b.ci95 or 0.0) for b in bars]
    ax.bar(x, [b.value for b in bars], color="#4C72B0", width=0.7)
    with_interval = [i for i, b in enumerate(bars) if b.ci95 is not None]
    if with_interval:
        ax.errorbar(with_interval, [bars[i].value for i in with_interval], yerr=[bars[i].ci95 for i in with_interval],
                    fmt="none", ecolor="black", elinewidth=1.2, capsize=4)
    for i, (b, top) in enumerate(zip(bars, tops)):
        text = f"{b.value:.1%}" if share else f"{b.value:.3g}"
        if b.ci95 is not None:
            text += f"\n± {b.ci95:.1%}" if share else f"\n± {b.ci95:.2g}"
        ax.annotate(text, (i, top), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), [f"{wrap(b.step, 16)}\n({b.note})" for b in bars], fontsize=8)
    ax.set_ylabel(f"{metric} (mean ± 95% CI)" if with_interval else metric)
    ax.set_title(wrap(title, int(width * 72 / (10 * 0.65))), fontsize=10)  # ~0.65 em per character
    if share:
        ax.set_ylim(0, max(1.05, 1.15 * max(tops)))
    else:
        ax.margins(y=0.2)
    return fig


def save_bar_chart(path: Path, bars: list[Bar], *, metric: str, title: str) -> None:
    """Write :func:`bar_chart` as a PNG."""
    bar_chart(bars, metric=metric, title=title).savefig(path, format="png")
