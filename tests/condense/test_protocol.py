"""The evaluation protocol, its statistics, float training data, and the synthetic set's file format."""

import numpy as np
import pytest
import torch

from curate.condense import SyntheticSet, distill, evaluate, random_baseline, summarize
from curate.condense.train_data import SyntheticData
from curate.condense.dsa import DSA
from curate.condense.protocol import t_quantile_975
from curate.learn import fit
from curate.models import create_model

from condense_helpers import TINY_NET, textures


def test_summary_statistics():
    out = summarize([0.5, 0.6, 0.7])
    assert out["mean"] == pytest.approx(0.6) and out["std"] == pytest.approx(0.1)
    assert out["ci95"] == pytest.approx(4.303 * 0.1 / np.sqrt(3))
    single = summarize([0.4])
    assert single["std"] == 0.0 and single["ci95"] is None and single["runs"] == [0.4]
    assert t_quantile_975(30) == 2.042 and t_quantile_975(1000) == pytest.approx(1.9623, abs=1e-3)


def test_fit_trains_on_float_model_input_with_dsa_and_a_hook():
    """SyntheticData yields floats (hooked, then augmented per image) that fit takes as model input."""
    images = torch.randn(8, 3, 32, 32)
    labels = torch.arange(4).repeat(2)
    seen = []

    def hook(x, y):
        seen.append(len(x))
        return torch.cat([x, x]), torch.cat([y, y])

    data = SyntheticData(images, labels, num_classes=4, augment=DSA(), transform=hook)
    net = create_model("convnet", num_classes=4, weights=None, seed=0, **TINY_NET)
    result = fit(net, data, epochs=2, batch_size=4, progress=False)
    assert seen == [4, 4, 4, 4] and len(result.history) == 2 and np.isfinite(result.history[-1]["loss"])


def test_two_class_toy_distils_a_set_that_trains_a_fresh_net_above_chance():
    images, labels = textures(per_class=16, classes=2, seed=1)
    result = distill(images, labels, method="dm", ipc=1, iterations=10, model_config=TINY_NET, progress=False,
                     batch_real=16)
    scores = evaluate(result, images, labels, model_config=TINY_NET, runs=3, epochs=20, progress=False)
    assert len(scores["runs"]) == 3 and scores["mean"] > 0.75
    assert set(scores) == {"mean", "std", "ci95", "runs"}
    baseline = random_baseline(images, labels, images, labels, ipc=1, model_config=TINY_NET, runs=2, epochs=5,
                               progress=False)
    assert len(baseline["runs"]) == 2


def test_evaluation_follows_the_methods_protocol_by_default(monkeypatch):
    """DM (distilled with DSA) is evaluated with DSA; a plain set without; both on fresh networks."""
    from curate import learn

    seen = []
    real_fit = learn.fit

    def spy_fit(model, data, **kwargs):
        seen.append((data.augment is not None, kwargs["epochs"], id(model), kwargs["lr_schedule"]))
        return real_fit(model, data, **{**kwargs, "epochs": 1})

    monkeypatch.setattr(learn, "fit", spy_fit)  # evaluate imports fit when called
    images, labels = textures(per_class=4, classes=2)
    dm = distill(images, labels, method="dm", ipc=1, iterations=1, model_config=TINY_NET, progress=False,
                 batch_real=4)
    evaluate(dm, images, labels, model_config=TINY_NET, runs=2, progress=False)
    plain = SyntheticSet(images=dm.images, labels=dm.labels, num_classes=2, mean=dm.mean, std=dm.std)
    evaluate(plain, images, labels, model_config=TINY_NET, runs=1, progress=False)
    assert [s[:2] for s in seen] == [(True, 1000), (True, 1000), (False, 300)]
    assert len({s[2] for s in seen}) == 3
    assert {s[3] for s in seen} == {"halfway"}  # lr x0.1 once at half-time, as the official evaluation


def test_evaluation_trains_in_chunks_except_batchnorm_networks(monkeypatch):
    from curate import learn

    micro_batches = []
    real_fit = learn.fit

    def spy_fit(model, data, **kwargs):
        micro_batches.append(kwargs["micro_batch"])
        return real_fit(model, data, **kwargs)

    monkeypatch.setattr(learn, "fit", spy_fit)
    images, labels = textures(per_class=6, classes=2)
    options = dict(runs=1, epochs=3, progress=False, device="cpu", seed=5)  # random_baseline runs evaluate
    chunked = random_baseline(images, labels, images, labels, ipc=6, model_config=TINY_NET, chunk=4, **options)
    whole = random_baseline(images, labels, images, labels, ipc=6, model_config=TINY_NET, chunk=1000, **options)
    random_baseline(images, labels, images, labels, ipc=2, model_config={**TINY_NET, "norm": "batchnorm"}, **options)
    assert micro_batches == [4, 1000, None]
    assert chunked["runs"] == whole["runs"]  # the same accuracy up to float rounding on 12 images


def test_synthetic_set_round_trips_through_safetensors(tmp_path):
    images, labels = textures(per_class=3, classes=2)
    result = distill(images, labels, method="dm", ipc=2, iterations=1, model_config=TINY_NET, progress=False,
                     batch_real=3, class_names=["a", "b"])
    result.save(tmp_path / "s.safetensors")
    loaded = SyntheticSet.load(tmp_path / "s.safetensors")
    assert torch.equal(loaded.images, result.images) and torch.equal(loaded.labels, result.labels)
    assert loaded.provenance == result.provenance and loaded.class_names == ["a", "b"]
    assert loaded.history == result.history and loaded.mean == result.mean


def test_model_input_renormalizes_for_another_model():
    images, labels = textures(per_class=2, classes=2)
    result = distill(images, labels, method="dm", ipc=1, iterations=0, model_config=TINY_NET, progress=False)
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    x = result.model_input(*imagenet, (32, 32))
    back = x * torch.tensor(imagenet[1]).view(1, 3, 1, 1) + torch.tensor(imagenet[0]).view(1, 3, 1, 1)
    assert torch.allclose(back, result.pixels(), atol=1e-5)
