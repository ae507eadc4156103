"""Config pieces shared by the model steps (which model, how to fit it, how to mix batches) and the
model helpers that go with them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from curate.config import option


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """A registry model: name, weights and extra constructor options."""

    model: str | None = option(None, help="registry model name (convnet, resnet20-cifar, hf:<id-or-path>, ...)")
    weights: str | None = option("default", help="'default' (bundled if any), null (random init) or a weights path",
                                 path=True)
    model_config: dict[str, Any] = option(default_factory=dict, help="extra options for the model constructor")


@dataclass(frozen=True, kw_only=True)
class ExecutorOptions:
    """Which executor runs a step's batch work (curate.execute.EXECUTORS)."""

    executor: str | None = option(None, help="local or ray: how this step's batch work runs (null: "
                                             "defaults.executor)")

    def __post_init__(self) -> None:
        from curate.config import ConfigValueError
        from curate.execute import executor_problem

        problem = self.executor and executor_problem(self.executor)
        if problem:
            raise ConfigValueError("executor", problem)


@dataclass(frozen=True, kw_only=True)
class FitOptions:
    """Options of curate.learn.fit, the one training loop."""

    epochs: int = option(10, gt=0, help="passes over the training rows")
    batch_size: int = option(128, gt=0)
    lr: float = option(0.05, gt=0, help="peak learning rate")
    momentum: float = option(0.9, ge=0, lt=1)
    weight_decay: float = option(5e-4, ge=0)
    optimizer: Literal["sgd", "adamw"] = option("sgd")
    lr_schedule: Literal["cosine", "step", "halfway", "constant"] = option("cosine")
    warmup_epochs: int = option(0, ge=0)
    flip: bool = option(True, help="random horizontal flips")
    crop_padding: int = option(4, ge=0, help="random crops after zero padding by this many pixels (0: off)")
    channels_last: bool = option(False, help="channels_last memory format (faster convolutions on CPU)")

    def fit_kwargs(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "momentum": self.momentum,
            "weight_decay": self.weight_decay, "optimizer": self.optimizer, "lr_schedule": self.lr_schedule,
            "warmup_epochs": self.warmup_epochs, "channels_last": self.channels_last,
        }

    def augment(self):
        from curate.learn.augment import Augment

        if not self.flip and self.crop_padding == 0:
            return None
        return Augment(flip=self.flip, crop_padding=self.crop_padding)


@dataclass(frozen=True, kw_only=True)
class MixOptions:
    """Batch mixing for training: CutMix or ResizeMix (curate.learn.mixing)."""

    mix: Literal["none", "cutmix", "resizemix"] = option("none", help="batch mixing")
    mix_alpha: float = option(1.0, gt=0, help="CutMix: box area from Beta(alpha, alpha)")
    mix_prob: float = option(1.0, ge=0, le=1, help="share of batches that are mixed")
    mix_scale: tuple[float, float] = option((0.1, 0.8), help="ResizeMix: range of the pasted image's scale")

    def mixer(self):
        """The configured box mixer, or None for ``mix: none``."""
        from curate.learn.mixing import create_mixer

        if self.mix == "none":
            return None
        if self.mix == "cutmix":
            return create_mixer("cutmix", alpha=self.mix_alpha, prob=self.mix_prob)
        return create_mixer("resizemix", scale=self.mix_scale, prob=self.mix_prob)


def model_spec(options: ModelOptions, *, class_names: list[str], seed: int, default: str | None = None
               ) -> dict[str, Any]:
    """What rebuilds the configured registry model anywhere (``curate.artifacts.load_recorded_model``):
    steps record it beside the arrays they compute, so a query or a worker uses the same model."""
    return {"name": options.model or default, "weights": options.weights, "config": dict(options.model_config),
            "class_names": list(class_names), "seed": seed}


def build_model(options: ModelOptions, *, class_names: list[str], seed: int, default: str | None = None):
    """Create the configured registry model for this table's classes, checking pretrained class names."""
    from curate.artifacts import load_recorded_model

    model = load_recorded_model(model_spec(options, class_names=class_names, seed=seed, default=default))
    check_class_names(model, class_names)
    return model


def check_class_names(model, class_names: list[str]) -> None:
    from curate.errors import UsageError

    names = getattr(model, "class_names", None)
    if names is not None and list(names) != list(class_names):
        raise UsageError(f"model '{getattr(model, 'name', '?')}' predicts classes {list(names)[:5]}... "
                         f"but the table's classes are {class_names[:5]}...; use a model trained on these classes")


def require_one_model(config: ModelOptions, wired: dict[str, list[str]]) -> list[tuple[str | None, str]]:
    """Validation rule for steps that take a model from `with.model` or from `inputs.model`."""
    if config.model and "model" in wired:
        return [("model", "give either `with.model` or `inputs.model`, not both")]
    if not config.model and "model" not in wired:
        return [("model", "name a registry model in `with.model` or wire a `train` step to `inputs.model`")]
    return []


def require_trained_head(model, class_names: list[str], *, output: str, fixes: str) -> None:
    """Refuse a model whose classifier head was never trained for these classes (a new head attached to a
    pretrained backbone, or a random init): what it outputs would be noise."""
    from curate.errors import UsageError

    if not getattr(model, "head_trained", False):
        shown = ", ".join(class_names[:3]) + (", ..." if len(class_names) > 3 else "")
        raise UsageError(f"model '{model.name}' has an untrained {model.num_classes}-class head for these classes "
                         f"({shown}), so its {output} would be noise; {fixes}")

