"""The evaluation protocol, its statistics, float training data, and the synthetic set's file format."""

import numpy as np
import pytest
import torch

from curate.condense import SyntheticSet, distill, evaluate, random_baseline, random_selection, summarize
from curate.condense.train_data import SyntheticData
from curate.condense.dsa import DSA
from curate.condense.protocol import official_phases, t_quantile_975
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
        # the model itself, not its id: a freed network's id can be reused by the next run's
        seen.append((data.augment is not None, kwargs["epochs"], kwargs["lr"], model, kwargs["lr_schedule"]))
        return real_fit(model, data, **{**kwargs, "epochs": 1})

    monkeypatch.setattr(learn, "fit", spy_fit)  # evaluate imports fit when called
    images, labels = textures(per_class=4, classes=2)
    dm = distill(images, labels, method="dm", ipc=1, iterations=1, model_config=TINY_NET, progress=False,
                 batch_real=4)
    evaluate(dm, images, labels, model_config=TINY_NET, runs=2, progress=False)
    plain = SyntheticSet(images=dm.images, labels=dm.labels, num_classes=2, mean=dm.mean, std=dm.std)
    evaluate(plain, images, labels, model_config=TINY_NET, runs=1, progress=False)
    # E + 1 epochs in two phases, the second at a tenth of the lr: 502 + 499 with DSA, 152 + 149 without
    dsa_run, plain_run = [(True, 502, 0.01), (True, 499, 0.001)], [(False, 152, 0.01), (False, 149, 0.001)]
    assert [s[:2] + (pytest.approx(s[2]),) for s in seen] == dsa_run * 2 + plain_run
    assert len({id(s[3]) for s in seen}) == 3  # a fresh network per run, trained on in both phases
    assert {s[4] for s in seen} == {"constant"}


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
    assert micro_batches == [4, 4, 1000, 1000, None, None]  # two phases each
    assert chunked["runs"] == whole["runs"]  # the same accuracy up to float rounding on 12 images


def test_synthetic_set_round_trips_through_safetensors(tmp_path):
    images, labels = textures(per_class=3, classes=2)
    result = distill(images, labels, method="dm", ipc=2, iterations=1, model_config=TINY_NET, progress=False,
                     batch_real=3, class_names=["a", "b"])
    result.save(tmp_path / "s.safetensors")
    loaded = SyntheticSet.load(tmp_path / "s.safetensors")
    assert torch.equal(loaded.images, result.images) and torch.equal(loaded.labels, result.labels)
    assert loaded.provenance == result.provenance and loaded.class_names == ["a", "b"]
    assert loaded.history == [{k: v for k, v in row.items() if k != "seconds"} for row in result.history]
    assert loaded.mean == result.mean  # the file keeps no wall-clock seconds: a resumed run writes the same bytes


def test_model_input_renormalizes_for_another_model():
    images, labels = textures(per_class=2, classes=2)
    result = distill(images, labels, method="dm", ipc=1, iterations=0, model_config=TINY_NET, progress=False)
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    x = result.model_input(*imagenet, (32, 32))
    back = x * torch.tensor(imagenet[1]).view(1, 3, 1, 1) + torch.tensor(imagenet[0]).view(1, 3, 1, 1)
    assert torch.allclose(back, result.pixels(), atol=1e-5)


def official_epoch_lrs(epochs: int, lr: float) -> list[float]:
    """The lr of each epoch of ``utils.evaluate_synset`` (VICO-UoE/DatasetCondensation), transcribed loop for loop."""
    lrs = []
    for ep in range(epochs + 1):
        lrs.append(lr)
        if ep in [epochs // 2 + 1]:
            lr *= 0.1
    return lrs


@pytest.mark.parametrize("epochs", [1, 2, 3, 4, 7, 10, 300, 1000])
def test_official_phases_give_each_epoch_the_official_lr(epochs):
    phases = official_phases(epochs, 0.01)
    per_epoch = [rate for n, rate in phases for _ in range(n)]
    assert per_epoch == pytest.approx(official_epoch_lrs(epochs, 0.01))
    if epochs >= 3:  # the drop falls after epoch index E//2 + 1: full lr there, a tenth from the next epoch on
        assert per_epoch[epochs // 2 + 1] == pytest.approx(0.01)
        assert per_epoch[epochs // 2 + 2] == pytest.approx(0.001)
        assert len(phases) == 2  # the optimizer is rebuilt exactly once, at the drop
    assert official_phases(300, 0.01) == [(152, 0.01), (149, pytest.approx(0.001))]


def test_evaluation_trains_exactly_as_the_official_loop(monkeypatch):
    """Full-batch SGD (no augmentation): the trained weights equal a transcription of ``evaluate_synset``, whose
    optimizer is rebuilt at the drop (momentum buffers back to zero), and differ from fit's ``halfway`` schedule."""
    import curate.models

    nets, initial = [], []
    real_create = curate.models.create_model

    def capture(*args, **kwargs):
        net = real_create(*args, **kwargs)
        nets.append(net)
        initial.append({k: v.clone() for k, v in net.state_dict().items()})
        return net

    images, labels = textures(per_class=4, classes=2)
    chosen = random_selection(images, labels, ipc=4, seed=0, model_config=TINY_NET)
    monkeypatch.setattr(curate.models, "create_model", capture)
    options = dict(model_config=TINY_NET, runs=1, epochs=6, lr=0.05, dsa=False, progress=False, device="cpu")
    evaluate(chosen, images, labels, **options)
    evaluate(chosen, images, labels, lr_schedule="halfway", **options)
    assert all(torch.equal(initial[0][k], initial[1][k]) for k in initial[0])  # the same seed, the same network

    reference = real_create("convnet", num_classes=2, weights=None, **TINY_NET)
    reference.load_state_dict(initial[0])
    x, y = chosen.images, chosen.labels
    lr = 0.05
    optimizer = torch.optim.SGD(reference.parameters(), lr=lr, momentum=0.9, weight_decay=0.0005)
    for ep in range(6 + 1):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(reference(x), y).backward()
        optimizer.step()
        if ep in [6 // 2 + 1]:
            lr *= 0.1
            optimizer = torch.optim.SGD(reference.parameters(), lr=lr, momentum=0.9, weight_decay=0.0005)
    official, halfway = (dict(net.named_parameters()) for net in nets)
    for name, value in reference.named_parameters():
        torch.testing.assert_close(official[name], value, rtol=1e-5, atol=1e-6)
    gap = max(float((halfway[n] - v).detach().abs().max()) for n, v in reference.named_parameters())
    assert gap > 1e-3
