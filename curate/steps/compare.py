"""`compare`: one table and one bar chart of a metric across several steps (held-out accuracy)."""

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


class CompareStep(Step):
    summary = "Compare a metric (held-out accuracy) of several train/predict steps: CSV table + bar chart PNG."
    version = 1
    Config = CompareConfig
    inputs = {"runs": Role(("model", "pred_probs"), many=True, help="steps whose metric to compare")}
    produces = ("report",)

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        scores = {k: v for k, v in metrics.items() if k != "seconds" and isinstance(v, (int, float))}
        return ", ".join(f"{step} {value:.4g}" for step, value in scores.items())

    def run(self, ctx: StepContext) -> None:
        from curate.errors import UsageError

        cfg: CompareConfig = ctx.config
        rows = []
        for inp in ctx.inputs_of("runs"):
            if cfg.metric not in inp.metrics:
                raise UsageError(f"step '{inp.step_id}' has no metric '{cfg.metric}' "
                                 f"(it has: {', '.join(inp.metrics) or 'none'})")
            rows.append((inp.step_id, inp.kind, float(inp.metrics[cfg.metric])))
        csv = "step,kind,{}\n".format(cfg.metric) + "".join(f"{s},{k},{v:.6f}\n" for s, k, v in rows)
        ctx.write_file("compare.csv", lambda p: p.write_text(csv))
        digest = ctx.write_file("compare.png", lambda p: _bar_chart(p, rows, cfg))
        ctx.add_output("report", {"path": "compare.png", "fingerprint": digest, "table": "compare.csv"})
        ctx.metrics.update({step: round(v, 4) for step, _, v in rows})


def _bar_chart(path: Path, rows: list[tuple[str, str, float]], cfg: CompareConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 2), 3.5), dpi=120)
    names = [r[0] for r in rows]
    values = [r[2] for r in rows]
    bars = ax.bar(names, values, color="#4C72B0")
    ax.bar_label(bars, labels=[f"{v:.1%}" if cfg.metric == "accuracy" else f"{v:.3g}" for v in values])
    ax.set_ylabel(cfg.metric)
    ax.set_title(cfg.title)
    if cfg.metric == "accuracy":
        ax.set_ylim(0, 1.05)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
