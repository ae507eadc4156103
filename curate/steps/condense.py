"""`condense`: distill a table's training split into a few synthetic images per class, then evaluate them.

Writes a new table version (the distilled rows, ``set: distilled``, plus the input's other
splits), the float synthetic set (``synthetic.safetensors``, what ``evaluate`` reads), a
per-class image grid, the loss curve, the loss history, and the evaluation of the
distilled set against random real images at the same IPC under the same protocol.
Distillation checkpoints live in ``checkpoints/``, so a killed run resumes where it stopped.
A run with fewer iterations or evaluation epochs than the method's published budget
(:mod:`curate.condense.budgets`) is marked "shortened protocol" in its metrics, its
evaluation report and its figure titles.

``sre2l`` and ``cda`` recover images from a teacher (``with.teacher`` names a registry model
with trained weights, or ``inputs.teacher`` takes a `train` step's model) and are evaluated
under the KD protocol, whose report also scores random real images under KD and with their
own labels (the same student recipe), and the sets of condense steps wired to
``inputs.compare`` (e.g. a DM step) under KD; ``blocks.json`` times each recovered block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from curate.condense.kd import KDRecipe
from curate.config import option
from curate.steps.base import Role, Step, StepContext
from curate.data.table import class_names_of, split_indices
from curate.steps.options import ModelOptions


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    """Fresh networks trained on the distilled set, scored on real test images (the hard or the KD protocol)."""

    runs: int = option(3, ge=0, help="fresh networks per evaluated set (0: no evaluation)")
    protocol: Literal["hard", "kd"] | None = option(None, help="hard: the condensation protocol; kd: students learn "
                                                               "the teacher's soft labels of every view (SRe2L's "
                                                               "relabel); null: the method's (kd for sre2l, cda)")
    kd: KDRecipe = option(default_factory=KDRecipe, help="the KD protocol's student recipe (relabel_cifar.py's)")
    relabel: Literal["on_the_fly", "stored"] = option("on_the_fly", help="KD: the teacher labels each batch as it is "
                                                                         "drawn, or FKD-style: views and fp16 logits "
                                                                         "recorded once and replayed by every run")
    epochs: int | None = option(None, gt=0, help="hard protocol: epochs E per network (null: 1000 with DSA, 300 "
                                                 "without); the official loop trains E + 1, lr x0.1 after E//2 + 1")
    split: str = option("test", help="real rows to score on")
    model: str | None = option(None, help="evaluation network (null: the distillation model)")
    model_config: dict[str, Any] | None = option(None, help="its options (null: the distillation model's)")
    batch_size: int = option(256, gt=0, help="hard protocol: batch size")
    lr: float = option(0.01, gt=0, help="hard protocol: SGD learning rate")
    baseline: bool = option(True, help="also evaluate random real images at the same IPC (under KD: with the "
                                       "teacher's labels and with their own)")


@dataclass(frozen=True, kw_only=True)
class CondenseConfig:
    method: str = option("dm", help="distiller (curate.condense.DISTILLERS): dc, dsa, dm, dcc, sre2l, cda")
    ipc: int = option(10, gt=0, help="synthetic images per class")
    iterations: int = option(100, ge=0, help="outer iterations of the method")
    plugins: tuple[str, ...] = option((), help="names of distillation plug-ins (curate.condense.DISTILL_PLUGINS, "
                                               "e.g. fyi) that hook every synthetic batch, in order")
    fyi: bool | None = option(None, help="shorthand: true adds fyi to plugins (false with fyi listed is an error)")
    init: Literal["real", "noise"] | None = option(None, help="start from random real images or from noise (null: "
                                                              "the method's official default: noise for dc, sre2l, "
                                                              "cda; real for dsa, dm, dcc)")
    model: str = option("convnet", help="registry model the method draws fresh random networks of (and the "
                                        "default evaluation network)")
    teacher: ModelOptions = option(default_factory=ModelOptions, help="the trained teacher sre2l and cda recover "
                                                                      "from and the KD protocol relabels with, e.g. "
                                                                      "{model: resnet20-cifar} (or inputs.teacher)")
    model_config: dict[str, Any] = option(default_factory=dict, help="its options, e.g. {width: 64}")
    options: dict[str, Any] = option(default_factory=dict, help="the method's own options (lr_img, batch_real, ...)")
    split: str = option("train", help="rows to condense")
    checkpoint_every: int = option(10, ge=0, help="save a resumable checkpoint every N iterations (0: never)")
    chunk: int | None = option(None, gt=0, help="images per network pass in distillation and evaluation training "
                                                "(null: 16 on CPU, 256 on a GPU); changes speed and float rounding")
    evaluate: EvaluateOptions = option(default_factory=EvaluateOptions, help="evaluation protocol")


class CondenseStep(Step):
    summary = ("Distill the training split (DC, DSA, DM, DCC; SRe2L, CDA from a teacher; FYI plug-in) and evaluate "
               "it against random selection.")
    version = 3  # 3: sre2l, cda, the teacher, the KD protocol and its baselines, `inputs.compare`
    Config = CondenseConfig
    inputs = {
        "data": Role(("table",), help="the table version to condense"),
        "teacher": Role(("model",), optional=True, help="a `train` step's model as the teacher (instead of "
                                                        "with.teacher)"),
        "compare": Role(("synthetic_set",), many=True, optional=True,
                        help="other condense steps whose sets are evaluated beside this one, under its protocol"),
    }
    produces = ("table", "synthetic_set", "report")

    @classmethod
    def headline(cls, metrics: Mapping[str, Any]) -> str:
        made = f"{metrics['rows']:,} images ({metrics['ipc']}/class)"
        if metrics.get("accuracy") is None:
            return f"{made}, not evaluated"
        random = metrics.get("random_accuracy")
        kd = " under KD" if metrics.get("eval_protocol") == "kd" else ""
        versus = f" vs {random:.2%} for random real images{kd}" if random is not None else ""
        if metrics.get("random_hard_accuracy") is not None:
            versus += f" ({metrics['random_hard_accuracy']:.2%} with their own labels)"
        shortened = f", {metrics['protocol']}" if metrics.get("protocol_shortfall") else ""
        return f"accuracy {metrics['accuracy']:.2%}{kd}{versus}; {made}{shortened}"

    @classmethod
    def check(cls, config: CondenseConfig, wired) -> list[tuple[str | None, str]]:
        from curate.condense import DISTILLERS
        from curate.condense.registry import plugin_problems
        from curate.config import parse_config

        problems: list[tuple[str | None, str]] = list(plugin_problems(config.plugins, fyi=config.fyi))
        if config.method not in DISTILLERS:
            return [("method", DISTILLERS.unknown_message(config.method)), *problems]
        method = DISTILLERS.get(config.method)
        _, option_problems = parse_config(method.Config, config.options, prefix="options.")
        return option_problems + problems + cls._teacher_problems(config, method, wired)

    @staticmethod
    def _teacher_problems(config: CondenseConfig, method, wired) -> list[tuple[str | None, str]]:
        ev = config.evaluate
        kd = bool(ev.runs) and (ev.protocol or method.evaluation) == "kd"
        named, wired_teacher = config.teacher.model is not None, "teacher" in wired
        where = "name one in `with.teacher` (e.g. {model: resnet20-cifar}) or wire a `train` step to `inputs.teacher`"
        if named and wired_teacher:
            return [("teacher", "give either `with.teacher.model` or `inputs.teacher`, not both")]
        if not (named or wired_teacher):
            if method.needs_teacher:
                return [("teacher", f"method '{config.method}' recovers images from a trained teacher; {where}")]
            if kd:
                return [("teacher", f"the KD protocol relabels with a teacher; {where}, or use `evaluate.protocol: "
                                    "hard`")]
        elif not (method.needs_teacher or kd):
            return [("teacher", f"method '{config.method}' evaluated under the hard protocol uses no teacher; drop "
                                "it, or set `evaluate.protocol: kd`")]
        if ev.relabel == "stored" and not kd:
            return [("evaluate.relabel", "stored soft labels belong to the KD protocol; set `evaluate.protocol: kd`")]
        if "compare" in wired and not ev.runs:
            return [("inputs.compare", "compared sets are only evaluated; set `evaluate.runs` above 0")]
        return []

    def run(self, ctx: StepContext) -> None:
        import numpy as np

        from curate.condense import DISTILLERS, distill, distilled_table
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
        method = DISTILLERS.get(cfg.method)
        protocol = (cfg.evaluate.protocol or method.evaluation) if cfg.evaluate.runs else None
        teacher = self._teacher(ctx, names) if method.needs_teacher or protocol == "kd" else None
        synthetic = distill(images, labels, method=cfg.method, ipc=cfg.ipc, iterations=cfg.iterations,
                            model=cfg.model, model_config=cfg.model_config, plugins=cfg.plugins, fyi=cfg.fyi,
                            init=cfg.init, teacher=teacher if method.needs_teacher else None, seed=ctx.seed,
                            device=ctx.torch_device(), progress=ctx.progress, checkpoint_dir=ctx.path("checkpoints"),
                            checkpoint_every=cfg.checkpoint_every, chunk=cfg.chunk, class_names=names,
                            **cfg.options)

        digest = ctx.write_file("synthetic.safetensors", synthetic.save)
        ctx.add_output("synthetic_set", {"path": "synthetic.safetensors", "fingerprint": digest,
                                         "rows": len(synthetic), "method": cfg.method, "ipc": cfg.ipc})
        ctx.save_table(distilled_table(synthetic, table, step_id=ctx.step_id, replaces=cfg.split))
        budget = self._budget(cfg, synthetic)
        grid = ctx.write_file("grid.png", lambda p: save_class_grid(synthetic, p, note=budget["shortfall"]))
        ctx.write_file("loss.png", lambda p: save_loss_curve(synthetic, p, note=budget["shortfall"]))
        ctx.add_output("report", {"path": "grid.png", "fingerprint": grid, "loss_curve": "loss.png"})
        ctx.write_json("history.json", synthetic.history)
        if synthetic.blocks:
            ctx.write_json("blocks.json", synthetic.blocks)

        if cfg.evaluate.runs:  # first, so the run summary's key metrics are the accuracies
            self._evaluate(ctx, table, synthetic, images, labels, budget, protocol=protocol, teacher=teacher)
        ctx.metrics.update(rows=len(synthetic), method=cfg.method, ipc=cfg.ipc,
                           plugins=synthetic.provenance["plugins"], init=synthetic.provenance["init"],
                           iterations=cfg.iterations, protocol=budget["label"],
                           protocol_shortfall=budget["shortfall"], paper_iterations=budget["paper_iterations"],
                           paper_eval_epochs=budget["paper_eval_epochs"])
        if synthetic.history:
            seconds = [row["seconds"] for row in synthetic.history]
            ctx.metrics.update(final_loss=round(synthetic.history[-1]["loss"], 6),
                               seconds_per_iteration=round(float(np.mean(seconds)), 3))
        if synthetic.blocks:
            ctx.metrics.update(blocks=len(synthetic.blocks), seconds_per_block=round(float(np.mean(
                [b["seconds"] for b in synthetic.blocks])), 3), teacher=synthetic.provenance["teacher"]["name"])

    @staticmethod
    def _teacher(ctx: StepContext, names: list[str]):
        """The teacher: a `train` step's model wired to `inputs.teacher`, or the registry model of `with.teacher`."""
        from curate.steps.options import build_model, check_class_names

        cfg: CondenseConfig = ctx.config
        wired = ctx.maybe_input("teacher")
        model = wired.model() if wired else build_model(cfg.teacher, class_names=names, seed=ctx.seed)
        check_class_names(model, names)
        return model

    @staticmethod
    def _budget(cfg: CondenseConfig, synthetic) -> dict[str, Any]:
        """The run against the method's published budget: label, shortfall (None: none) and the budget."""
        from curate.condense.budgets import PROTOCOL_EPOCHS, SHORTENED, paper_budget, shortfall

        dsa = bool(synthetic.provenance["eval_dsa"])
        kd = (cfg.evaluate.protocol or synthetic.provenance["evaluation"]) == "kd"
        hard_epochs = cfg.evaluate.epochs or PROTOCOL_EPOCHS[dsa]
        eval_epochs = (cfg.evaluate.kd.epochs if kd else hard_epochs) if cfg.evaluate.runs else None
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

    def _evaluate(self, ctx: StepContext, table, synthetic, images, labels, budget: dict[str, Any], *,
                  protocol: str, teacher) -> None:
        import numpy as np

        from curate.condense import SyntheticSet, evaluate, random_selection
        from curate.config import to_dict
        from curate.data import decode_images
        from curate.errors import UsageError

        cfg: CondenseConfig = ctx.config
        ev = cfg.evaluate
        net, model, model_config = self._evaluation_model(cfg, synthetic.num_classes)
        size = net.preprocess.size
        test_idx = split_indices(table, ev.split, where="with.evaluate.split")
        test_images = decode_images(table, test_idx, size=size)
        test_labels = np.asarray(table["label"])[test_idx]
        common = dict(model=model, model_config=model_config, runs=ev.runs, seed=ctx.seed, device=ctx.torch_device(),
                      progress=ctx.progress, chunk=cfg.chunk)
        if protocol == "kd":
            options = dict(common, protocol="kd", teacher=teacher, kd=ev.kd)
            shown = dict(options, teacher=synthetic.provenance.get("teacher") or {"name": teacher.name},
                         kd=to_dict(ev.kd), relabel=ev.relabel)
        else:
            dsa = bool(synthetic.provenance["eval_dsa"])
            options = dict(common, protocol="hard", epochs=ev.epochs, dsa=dsa,
                           dsa_strategy=synthetic.provenance["dsa_strategy"], batch_size=ev.batch_size, lr=ev.lr,
                           lr_schedule="official")
            shown = options
        report: dict[str, Any] = {"protocol": {k: v for k, v in shown.items() if k not in ("device", "progress")},
                                  "budget": budget}

        def score(name: str, chosen, **extra) -> dict[str, Any]:
            if protocol == "kd" and ev.relabel == "stored" and extra.get("protocol") != "kd_hard":
                extra["soft_labels"] = self._soft_labels(ctx, chosen, teacher, save=name == "distilled")
            report[name] = evaluate(chosen, test_images, test_labels, **{**options, **extra})
            return report[name]

        sets = [("accuracy", score("distilled", synthetic))]
        if ev.baseline:
            chosen = random_selection(images, labels, ipc=cfg.ipc, seed=ctx.seed, model=model,
                                      model_config=model_config)
            sets.append(("random_accuracy", score("random", chosen)))
            if protocol == "kd":  # the same recipe with the images' own labels: what the teacher adds
                sets.append(("random_hard_accuracy", score("random_hard", chosen, protocol="kd_hard", teacher=None)))
        for inp in ctx.inputs_of("compare"):
            other = SyntheticSet.load(inp.dir / inp.entry("synthetic_set")["path"])
            if other.num_classes != synthetic.num_classes:
                raise UsageError(f"step '{inp.step_id}' (inputs.compare) distilled {other.num_classes} classes, this "
                                 f"step {synthetic.num_classes}; compare sets of the same table")
            sets.append((f"{inp.step_id}_accuracy", score(inp.step_id, other)))
        ctx.write_json("evaluation.json", report)
        # means first (the run summary shows the first metrics), then intervals and spreads
        for key, suffix in (("mean", ""), ("ci95", "_ci95"), ("std", "_std")):
            for name, result in sets:
                ctx.metrics[name + suffix] = None if result[key] is None else round(result[key], 4)
        ctx.metrics.update(eval_protocol=protocol, eval_runs=ev.runs, eval_rows=len(test_idx))

    @staticmethod
    def _soft_labels(ctx: StepContext, chosen, teacher, *, save: bool):
        """FKD-style soft labels of ``chosen`` (the distilled set's are kept as ``soft_labels.safetensors``)."""
        from curate.condense.relabel import record_set

        cfg: CondenseConfig = ctx.config
        record = record_set(chosen, teacher=teacher, kd=cfg.evaluate.kd, seed=ctx.seed, device=ctx.torch_device())
        if save:
            ctx.write_file("soft_labels.safetensors", record.save)
        return record
