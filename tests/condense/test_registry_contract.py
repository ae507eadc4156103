"""One contract for everything registered in DISTILLERS and DISTILL_PLUGINS (2-class tiny toy, 2 iterations, CPU)."""

import dataclasses

import pytest
import torch

from curate.condense import DISTILL_PLUGINS, DISTILLERS, SyntheticSet, distill
from curate.condense.base import BlockDistiller
from curate.condense.driver import INITS
from curate.config import from_mapping, parse_config, to_dict

from condense_helpers import TINY_NET, textures, tiny_teacher

METHODS = DISTILLERS.names()
PLUGINS = DISTILL_PLUGINS.names()
IPC = 2


def run(method: str, **kwargs) -> SyntheticSet:
    """A 2-class run; methods that recover from a teacher get a tiny trained BatchNorm ConvNet."""
    images, labels = textures(per_class=4, classes=2)
    options = dict(method=method, ipc=IPC, iterations=2, model_config=TINY_NET, progress=False, seed=7, device="cpu")
    if DISTILLERS.get(method).needs_teacher:
        options["teacher"] = tiny_teacher()
    return distill(images, labels, **{**options, **kwargs})


@pytest.mark.parametrize("method", METHODS)
def test_distiller_returns_a_class_major_set_that_moved(method):
    result = run(method)
    assert isinstance(result, SyntheticSet) and result.images.dtype == torch.float32
    assert result.images.shape == (2 * IPC, 3, 32, 32) and result.num_classes == 2
    assert result.labels.tolist() == [0] * IPC + [1] * IPC
    assert [row["iteration"] for row in result.history] == [1, 2]
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in result.history)
    assert torch.isfinite(result.images).all()
    assert result.provenance["method"] == method and result.provenance["init"] in INITS
    assert not torch.equal(result.images, run(method, iterations=0).images), "two iterations left the images as is"


@pytest.mark.parametrize("method", METHODS)
def test_distiller_is_deterministic_for_a_seed(method):
    assert torch.equal(run(method).images, run(method).images)
    assert not torch.equal(run(method).images, run(method, seed=8).images)


@pytest.mark.parametrize("method", METHODS)
def test_a_killed_run_resumes_from_its_checkpoints_to_the_same_result(method, tmp_path, monkeypatch):
    import curate.condense.driver as driver

    saves = {name: getattr(driver, name) for name in ("save_checkpoint", "save_block")}

    class Killed(Exception):
        pass

    def killing(name):
        def save(*args, **kwargs):
            saves[name](*args, **kwargs)
            raise Killed  # the process dies right after its first checkpoint reached the disk

        return save

    for name in saves:
        monkeypatch.setattr(driver, name, killing(name))
    with pytest.raises(Killed):
        run(method, checkpoint_dir=tmp_path, checkpoint_every=1)
    for name, save in saves.items():
        monkeypatch.setattr(driver, name, save)
    assert any(tmp_path.rglob("*.safetensors")), f"{method} wrote no checkpoint before it was killed"
    resumed = run(method, checkpoint_dir=tmp_path, checkpoint_every=1)
    uninterrupted = run(method)
    assert torch.equal(resumed.images, uninterrupted.images)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in uninterrupted.history]


@pytest.mark.parametrize("method", [m for m in METHODS if not issubclass(DISTILLERS.get(m), BlockDistiller)])
def test_distiller_resumes_from_a_checkpoint_to_the_same_result(method, tmp_path):
    first = run(method, iterations=1, checkpoint_dir=tmp_path, checkpoint_every=1)
    resumed = run(method, checkpoint_dir=tmp_path, checkpoint_every=1)
    uninterrupted = run(method)
    assert resumed.history[0] == first.history[0]  # iteration 1 (and its timing) came from the checkpoint
    assert torch.equal(resumed.images, uninterrupted.images)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in uninterrupted.history]


@pytest.mark.parametrize("method", METHODS)
def test_distiller_config_validates_and_resolves_every_default(method):
    cls = DISTILLERS.get(method)
    params = cls.Config.__dataclass_params__
    assert dataclasses.is_dataclass(cls.Config) and params.frozen
    assert all(f.kw_only for f in dataclasses.fields(cls.Config))
    config, problems = parse_config(cls.Config, {})
    assert problems == []
    _, problems = parse_config(cls.Config, {"no_such_option": 1})
    assert [field for field, _ in problems] == ["no_such_option"]
    for ipc in (1, 10, 100):
        resolved = cls.resolve(config, ipc=ipc, iterations=20)
        assert isinstance(resolved, cls.Config)
        unresolved = [f.name for f in dataclasses.fields(resolved) if getattr(resolved, f.name) is None]
        assert unresolved == [], f"{method} leaves {unresolved} to be filled at IPC {ipc}"
        assert from_mapping(cls.Config, to_dict(resolved)) == resolved  # what provenance records rebuilds it
    assert cls.default_init in INITS


@pytest.mark.parametrize("plugin", PLUGINS)
def test_plugin_maps_a_batch_to_same_dtype_tensors_of_matching_length(plugin):
    hook = DISTILL_PLUGINS.get(plugin)()
    images = torch.randn(5, 3, 8, 8, requires_grad=True)
    labels = torch.tensor([0, 1, 1, 0, 2])
    out, out_labels = hook(images, labels)
    assert out.dtype == images.dtype and out_labels.dtype == labels.dtype
    assert len(out) == len(out_labels) >= 1 and out.shape[1:] == images.shape[1:]
    assert set(out_labels.tolist()) <= set(labels.tolist())
    (grad,) = torch.autograd.grad(out.square().sum(), images)  # distillation learns through the hook
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("plugin", PLUGINS)
@pytest.mark.parametrize("method", METHODS)
def test_plugin_runs_inside_every_distiller(method, plugin, monkeypatch):
    original = DISTILL_PLUGINS.get(plugin)
    batches = []

    class Spy:
        def __init__(self):
            self.inner = original()

        def __call__(self, images, labels):
            batches.append(len(images))
            return self.inner(images, labels)

    monkeypatch.setitem(DISTILL_PLUGINS._entries, plugin, Spy)
    result = run(method, plugins=[plugin])
    assert batches, f"{method} never passed a synthetic batch through plug-in {plugin}"
    assert result.images.shape == (2 * IPC, 3, 32, 32)  # the stored set keeps IPC images per class
    assert result.provenance["plugins"] == [plugin]
