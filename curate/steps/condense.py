"""`condense`: distill a table's training split into a few synthetic images per class, then evaluate them.

Writes a new table version (the distilled rows, ``set: distilled``, plus the input's other
splits), the float synthetic set (``synthetic.safetensors``, what ``evaluate`` reads), a
per-class image grid, the loss curve, the loss history, and the evaluation of the
distilled set against random real images at the same IPC under the same protocol.
Distillation checkpoints live in ``checkpoints/``, so a killed run resumes where it stopped.
A run with fewer iterations or evaluation epochs than the method's published budget
(:mod:`curate.condense.budgets`) is marked "shortened protocol" in its metrics, its
evaluation report and its figure titles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from curate.config import option
from curate.steps.base import Role, Step, StepContext
from curate.data.table import class_names_of, split_indices


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    """The standard protocol: fresh networks trained on the distilled set, scored on real test images."""

    runs: int = option(3, ge=0, help="fresh networks per evaluated set (0: no evaluation)")
    epochs: int | None = option(None, gt=0, help="the protocol's epochs E per network (null: 1000 with DSA, 300 "
                                                 "without); the official loop trains E + 1, lr x0.1 after E//2 + 1")
    split: str = option("test", help="real rows to score on")
    model: str | None = option(None, help="evaluation network (null: the distillation model)")
    model_config: dict[str, Any] | None = option(None, help="its options (null: the distillation model's)")
    batch_size: int = option(256, gt=0)
    lr: float = option(0.01, gt=0)
    baseline: bool = option(True, help="also evaluate random real images at the same IPC")


@dataclass(frozen=True, kw_only=True)
class CondenseConfig:
    method: str = option("dm", help="distiller (curate.condense.DISTILLERS): dc, dsa, dm, dcc")
    ipc: int = option(10, gt=0, help="synthetic images per class")
    iterations: int = option(100, ge=0, help="outer iterations of the method")
    plugins: tuple[str, ...] = option((), help="names of distillation plug-ins (curate.condense.DISTILL_PLUGINS, "
                                               "e.g. fyi) that hook every synthetic batch, in order")
    fyi: bool | None = option(None, help="shorthand: true adds fyi to plugins (false with fyi listed is an error)")
    init: Literal["real", "noise"] | None = option(None, help="start from random real images or from noise (null: "
                                                              "the method's official default: noise for dc, real "
                                                              "for dsa, dm, dcc)")
    model: str = option("convnet", help="registry model the method draws fresh random networks of")
    model_config: dict[str, Any] = option(default_factory=dict, help="its options, e.g. {width: 64}")
    options: dict[str, Any] = option(default_factory=dict, help="the method's own options (lr_img, batch_real, ...)")
    split: str = option("train", help="rows to condense")
    checkpoint_every: int = option(10, ge=0, help="save a resumable checkpoint every N iterations (0: never)")
    chunk: int | None = option(None, gt=0, help="images per network pass in distillation and evaluation training "
                                                "(null: 16 on CPU, 256 on a GPU); changes speed and float rounding")
    evaluate: EvaluateOptions = option(default_factory=EvaluateOptions, help="evaluation protocol")


class CondenseStep(Step):
    summary = "Distill the training split (DC, DSA, DM, DCC; FYI plug-in) and evaluate it against random selection."
    version = 2  # 2: official init/lr defaults and evaluation schedule, `plugins`, shortened-protocol marks
    Config = CondenseConfig
    inputs = {"data": Role(("table",), help="the table version to condense")}
    produces = ("table", "synthetic_set", "report")

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        made = f"{metrics['rows']:,} images ({metrics['ipc']}/class)"
        if metrics.get("accuracy") is None:
            return f"{made}, not evaluated"
        random = metrics.get("random_accuracy")
        versus = f" vs {random:.2%} for random real images" if random is not None else ""
        shortened = f", {metrics['protocol']}" if metrics.get("protocol_shortfall") else ""
        return f"accuracy {metrics['accuracy']:.2%}{versus}; {made}{shortened}"

    @classmethod
    def check(cls, config: CondenseConfig, wired) -> list[tuple[str | None, str]]:
        from curate.condense import DISTILLERS
        from curate.condense.registry import plugin_problems
        from curate.config import parse_config

        problems: list[tuple[str | None, str]] = list(plugin_problems(config.plugins, fyi=config.fyi))
        if config.method not in DISTILLERS:
            return [("method", DISTILLERS.unknown_message(config.method)), *problems]
        _, option_problems = parse_config(DISTILLERS.get(config.method).Config, config.options, prefix="options.")
        return option_problems + problems

    def run(self, ctx: StepContext) -> None:
        import numpy as np

        from curate.condense import distill, distilled_table
        from curate.condense.report import save_class_grid, save_loss_curve
        from curate.data import decode_images
        from curate.learn.chunking import check_chunk
        from curate.models import create_model

        cfg: CondenseConfig = ctx.config
        data = ctx.input("data")
        table = data.table()
        names = class_names_of(table)
        idx = split_indices(table, cfg.split, where="with.split")
        labels = np.asarray(table["label"])[idx]
        size = create_model(cfg.model, num_classes=len(names), weights=None, **cfg.model_config).preprocess.size
        if cfg.chunk is not None and cfg.evaluate.runs:  # fail before distilling, not after
            check_chunk(cfg.chunk, self._evaluation_model(cfg, len(names))[0], name="chunk")
        images = decode_images(table, idx, size=size)
        synthetic = distill(images, labels, method=cfg.method, ipc=cfg.ipc, iterations=cfg.iterations,
                            model=cfg.model, model_config=cfg.model_config, plugins=cfg.plugins, fyi=cfg.fyi,
                            init=cfg.init, seed=ctx.seed, device=ctx.torch_device(), progress=ctx.progress,
                            checkpoint_dir=ctx.path("checkpoints"), checkpoint_every=cfg.checkpoint_every,
                            chunk=cfg.chunk, class_names=names, **cfg.options)

        digest = ctx.write_file("synthetic.safetensors", synthetic.save)
        ctx.add_output("synthetic_set", {"path": "synthetic.safetensors", "fingerprint": digest,
                                         "rows": len(synthetic), "method": cfg.method, "ipc": cfg.ipc})
        ctx.save_table(distilled_table(synthetic, table, step_id=ctx.step_id, replaces=cfg.split))
        budget = self._budget(cfg, synthetic)
        grid = ctx.write_file("grid.png", lambda p: save_class_grid(synthetic, p, note=budget["shortfall"]))
        ctx.write_file("loss.png", lambda p: save_loss_curve(synthetic, p, note=budget["shortfall"]))
        ctx.add_output("report", {"path": "grid.png", "fingerprint": grid, "loss_curve": "loss.png"})
        ctx.write_json("history.json", synthetic.history)

        if cfg.evaluate.runs:  # first, so the run summary's key metrics are the accuracies
            self._evaluate(ctx, table, synthetic, images, labels, budget)
        ctx.metrics.update(rows=len(synthetic), method=cfg.method, ipc=cfg.ipc,
                           plugins=synthetic.provenance["plugins"], init=synthetic.provenance["init"],
                           iterations=cfg.iterations, protocol=budget["label"],
                           protocol_shortfall=budget["shortfall"], paper_iterations=budget["paper_iterations"],
                           paper_eval_epochs=budget["paper_eval_epochs"])
        if synthetic.history:
            seconds = [row["seconds"] for row in synthetic.history]
            ctx.metrics.update(final_loss=round(synthetic.history[-1]["loss"], 6),
                               seconds_per_iteration=round(float(np.mean(seconds)), 3))

    @staticmethod
    def _budget(cfg: CondenseConfig, synthetic) -> dict[str, Any]:
        """The run against the method's published budget: label, shortfall (None: none) and the budget."""
        from curate.condense.budgets import PROTOCOL_EPOCHS, SHORTENED, paper_budget, shortfall

        dsa = bool(synthetic.provenance["eval_dsa"])
        eval_epochs = (cfg.evaluate.epochs or PROTOCOL_EPOCHS[dsa]) if cfg.evaluate.runs else None
        budget = paper_budget(cfg.method, eval_dsa=dsa)
        short = shortfall(cfg.method, iterations=cfg.iterations, eval_epochs=eval_epochs, eval_dsa=dsa)
        label = "no published budget" if budget is None else SHORTENED if short else "paper budget"
        return {"label": label, "shortfall": short, "paper_iterations": budget and budget.iterations,
                "paper_eval_epochs": budget and budget.eval_epochs}

    @staticmethod
    def _evaluation_model(cfg: CondenseConfig, num_classes: int):
        """(a network of the evaluation model, its registry name, its options)."""
        from curate.models import create_model

        model = cfg.evaluate.model or cfg.model
        model_config = cfg.evaluate.model_config if cfg.evaluate.model_config is not None else cfg.model_config
        return create_model(model, num_classes=num_classes, weights=None, **model_config), model, model_config

    def _evaluate(self, ctx: StepContext, table, synthetic, images, labels, budget: dict[str, Any]) -> None:
        import numpy as np

        from curate.condense import evaluate, random_baseline
        from curate.data import decode_images

        cfg: CondenseConfig = ctx.config
        ev = cfg.evaluate
        net, model, model_config = self._evaluation_model(cfg, synthetic.num_classes)
        size = net.preprocess.size
        test_idx = split_indices(table, ev.split, where="with.evaluate.split")
        test_images = decode_images(table, test_idx, size=size)
        test_labels = np.asarray(table["label"])[test_idx]
        dsa = bool(synthetic.provenance["eval_dsa"])
        protocol = dict(model=model, model_config=model_config, runs=ev.runs, epochs=ev.epochs, dsa=dsa,
                        dsa_strategy=synthetic.provenance["dsa_strategy"], batch_size=ev.batch_size, lr=ev.lr,
                        lr_schedule="official", seed=ctx.seed, device=ctx.torch_device(), progress=ctx.progress,
                        chunk=cfg.chunk)
        report: dict[str, Any] = {"protocol": {k: v for k, v in protocol.items() if k not in ("device", "progress")},
                                  "budget": budget}
        report["distilled"] = evaluate(synthetic, test_images, test_labels, **protocol)
        if ev.baseline:
            report["random"] = random_baseline(images, labels, test_images, test_labels, ipc=cfg.ipc, **protocol)
        ctx.write_json("evaluation.json", report)
        # means first (the run summary shows the first metrics), then intervals and spreads
        sets = [("accuracy", report["distilled"])] + ([("random_accuracy", report["random"])] if ev.baseline else [])
        for key, suffix in (("mean", ""), ("ci95", "_ci95"), ("std", "_std")):
            for name, result in sets:
                ctx.metrics[name + suffix] = None if result[key] is None else round(result[key], 4)
        ctx.metrics.update(eval_runs=ev.runs, eval_rows=len(test_idx))
