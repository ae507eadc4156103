"""``create_model`` and friends: build, list, save and load models by registry name.

Entries are :class:`~curate.models.base.CurateModel` classes called as
``cls(num_classes=K, **cfg)``, or, for names ending in ``:``, prefix resolvers:
``"hf:"`` resolves every ``hf:<hub-id-or-path>`` name and is called as
``resolver(source, num_classes=K, pretrained=..., **cfg)``. Entries are dotted
paths, so listing names imports neither the model code nor transformers.

A saved model is a folder with ``config.json`` (name, num_classes, class_names, cfg)
and ``weights.safetensors``; :func:`load_model` rebuilds it through the registry.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
from pathlib import Path
from typing import Any, Iterator

import torch

from curate.errors import UsageError
from curate.models.base import CurateModel
from curate.models.weights import load_state, load_weights, read_state_dict
from curate.registry import Registry, did_you_mean

logger = logging.getLogger(__name__)

MODELS: Registry = Registry("model", entry_point_group="curate.models")
MODELS.register("convnet", "curate.models.convnet:ConvNet")
MODELS.register("resnet20-cifar", "curate.models.resnet_cifar:ResNet20Cifar")
MODELS.register("resnet56-cifar", "curate.models.resnet_cifar:ResNet56Cifar")
MODELS.register("hf:", "curate.models.hf:build_hf_model")

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
_CONFIG_KEYS = ("name", "num_classes", "class_names", "cfg", "head_trained", "_curate_version")


def list_models() -> list[str]:
    """Registered names; a name ending in ':' is a prefix (``hf:`` takes a hub id or a local path)."""
    return MODELS.names()


def _resolve(name: str) -> tuple[Any, str | None]:
    """(entry, source): source is the part after a registered prefix, else None."""
    prefix, sep, source = name.partition(":")
    if sep and f"{prefix}:" in MODELS:
        if not source:
            raise UsageError(f"model name {name!r} needs a source after '{prefix}:', e.g. 'hf:facebook/dinov2-small'")
        return MODELS.get(f"{prefix}:"), source
    return MODELS.get(name), None


def _check_options(entry: Any, name: str, cfg: dict[str, Any]) -> None:
    params = inspect.signature(entry).parameters
    fixed = {"num_classes", "pretrained", "source", "self"}
    options = [p for p in params if p not in fixed and params[p].kind is inspect.Parameter.KEYWORD_ONLY]
    for key in cfg:
        if key not in options:
            known = ", ".join(options) if options else "none"
            raise UsageError(f"model {name!r} has no option {key!r}{did_you_mean(key, options)}; options: {known}")


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed torch's CPU RNG inside the block only; the caller's RNG state is restored after."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _head_prefix(model: CurateModel) -> str:
    head = model.classifier_head
    return next(n for n, m in model.named_modules() if m is head) + "."


def _load_default_weights(model: CurateModel, path: Path) -> bool:
    """Load bundled weights; a head of another class count is left new (backbone transfer).
    Returns whether the head was loaded."""
    state = read_state_dict(path)
    head = _head_prefix(model)
    bundled_k = state[head + "weight"].shape[0] if head + "weight" in state else model.num_classes
    skip = head if bundled_k != model.num_classes else None
    if skip:
        logger.info("%s: bundled weights have a %d-class head; loading the backbone only, the %d-class head is new "
                    "(untrained)", path.name, bundled_k, model.num_classes)
    load_state(model, state, source=path, skip_prefix=skip)
    return skip is None


def create_model(name: str, *, num_classes: int = 10, weights: str | Path | None = "default",
                 class_names: list[str] | None = None, seed: int | None = None, **cfg: Any) -> CurateModel:
    """Build a registered model, in eval mode.

    ``weights``: ``"default"`` loads the model's bundled (or, for ``hf:``, the
    checkpoint's) weights, or leaves a random init when it has none; ``None`` gives a
    random init; otherwise a ``.safetensors`` / ``.pt/.th/.pth`` file, loaded strictly.
    Default weights whose head has another class count than ``num_classes`` load as a
    backbone with a new head. ``seed`` makes the random init deterministic without
    touching the global RNG. ``cfg`` holds the model's own options (e.g. ``width=64``).

    ``model.head_trained`` records whether the head holds trained weights for these classes:
    True when default weights bring a head of ``num_classes`` classes whose own class names
    (if it has any) equal ``class_names``, or when ``weights`` is a file (a saved model's
    head belongs to the names saved with it); False for a new head or a random init.
    Prefix resolvers set it for their default weights (``hf:``: the checkpoint's head kept).
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise UsageError(f"`num_classes` must be an integer >= 1, got {num_classes!r}")
    entry, source = _resolve(name)
    _check_options(entry, name, cfg)
    default = isinstance(weights, str) and weights == "default"
    with _seeded(seed):
        if source is not None:
            model = entry(source, num_classes=num_classes, pretrained=default, **cfg)
        else:
            model = entry(num_classes=num_classes, **cfg)
            model.head_trained = bool(default and model.default_weights is not None
                                      and _load_default_weights(model, model.default_weights))
    if weights is not None and not default:
        load_weights(model, weights)
        model.head_trained = True
    if class_names is not None:
        if len(class_names) != num_classes:
            raise UsageError(f"`class_names` has {len(class_names)} names but `num_classes` is {num_classes}")
        names = [str(c) for c in class_names]
        if default and model.class_names is not None and list(model.class_names) != names:
            model.head_trained = False  # the bundled head scores other classes than these
        model.class_names = names
    model.name = name
    return model.eval()


def save_model(model: CurateModel, folder: Path) -> None:
    """Write ``config.json`` and ``weights.safetensors`` into ``folder`` (wrap it in ``atomic_dir``)."""
    from safetensors.torch import save_file

    from curate import __version__

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"name": model.name, "num_classes": model.num_classes, "class_names": model.class_names,
              "cfg": model.cfg, "head_trained": bool(model.head_trained), "_curate_version": __version__}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    # One metadata key: safetensors orders several arbitrarily, so the bytes (and the model's fingerprint,
    # which downstream cache keys read) would change from save to save; config.json names the model.
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})


def load_model(folder: str | Path) -> CurateModel:
    """Rebuild a model written by :func:`save_model` through the registry, in eval mode.

    ``head_trained`` is what was saved (a self-supervised backbone keeps an untrained head); files that
    predate the key hold trained heads.
    """
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise UsageError(f"{str(folder)!r} is not a saved model: {CONFIG_FILE} is missing")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise UsageError(f"{config_path}: not valid JSON ({err})") from err
    if not isinstance(config, dict) or "name" not in config or "num_classes" not in config:
        raise UsageError(f"{config_path}: expected an object with at least 'name' and 'num_classes'")
    unknown = sorted(set(config) - set(_CONFIG_KEYS))
    if unknown:
        logger.warning("%s: ignoring unknown keys %s (written by a newer curate?)", config_path, ", ".join(unknown))
    model = create_model(config["name"], num_classes=config["num_classes"], weights=folder / WEIGHTS_FILE,
                         class_names=config.get("class_names"), **config.get("cfg", {}))
    model.head_trained = bool(config.get("head_trained", True))
    return model
