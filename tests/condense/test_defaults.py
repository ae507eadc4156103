"""The official defaults of the published tables: where each method starts, DM's image lr, and the budgets."""

import pytest
import torch

from curate.condense import DISTILLERS, distill, random_selection
from curate.condense.budgets import PAPER_BUDGETS, Budget, paper_budget, shortfall
from curate.condense.distribution_matching import DistributionMatching

from condense_helpers import TINY_NET, textures

OFFICIAL_INIT = {"dc": "noise", "dsa": "real", "dm": "real", "dcc": "real"}


@pytest.mark.parametrize("method", sorted(OFFICIAL_INIT))
def test_each_method_starts_where_its_official_script_does(method):
    images, labels = textures(per_class=4, classes=2)
    kwargs = dict(method=method, ipc=2, iterations=0, model_config=TINY_NET, progress=False, seed=3)
    start = distill(images, labels, **kwargs)
    chosen = random_selection(images, labels, ipc=2, seed=3, model_config=TINY_NET)
    assert start.provenance["init"] == OFFICIAL_INIT[method]
    if OFFICIAL_INIT[method] == "real":
        assert torch.equal(start.images, chosen.images)
    else:  # standard normal noise in the model's input space
        assert not torch.equal(start.images, chosen.images)
        assert abs(float(start.images.mean())) < 0.05 and abs(float(start.images.std()) - 1) < 0.05
    other = "real" if OFFICIAL_INIT[method] == "noise" else "noise"
    assert distill(images, labels, init=other, **kwargs).provenance["init"] == other


@pytest.mark.parametrize("ipc,lr", [(1, 1.0), (10, 1.0), (50, 1.0), (99, 1.0), (100, 10.0), (1000, 10.0)])
def test_dm_image_lr_follows_the_official_cifar10_commands_by_ipc(ipc, lr):
    config = DistributionMatching.resolve(DistributionMatching.Config(), ipc=ipc, iterations=1)
    assert config.lr_img == lr
    assert DistributionMatching.resolve(DistributionMatching.Config(lr_img=3.0), ipc=ipc, iterations=1).lr_img == 3.0


def test_the_image_optimizer_uses_the_resolved_lr():
    images, labels = textures(per_class=2, classes=2)
    kwargs = dict(ipc=1, iterations=0, model_config=TINY_NET, progress=False)
    assert distill(images, labels, method="dm", **kwargs).provenance["options"]["lr_img"] == 1.0
    assert distill(images, labels, method="dc", **kwargs).provenance["options"]["lr_img"] == 0.1
    # one DM step from a known start moves the images by lr_img times the first gradient (SGD, no momentum yet)
    moved = {}
    for lr in (1.0, 2.0):
        start = distill(images, labels, method="dm", **kwargs)
        after = distill(images, labels, method="dm", **{**kwargs, "iterations": 1}, lr_img=lr)
        moved[lr] = after.images - start.images
    torch.testing.assert_close(moved[2.0], 2 * moved[1.0], rtol=1e-4, atol=1e-6)


def test_every_built_in_method_has_a_published_budget():
    assert set(PAPER_BUDGETS) == {"dc", "dsa", "dm", "dcc", "sre2l", "cda"} == set(DISTILLERS.names())
    assert paper_budget("dc", eval_dsa=False) == Budget(iterations=1000, eval_epochs=300)
    assert paper_budget("dc", eval_dsa=True) == Budget(iterations=1000, eval_epochs=1000)  # DC with DSA is DSA
    assert paper_budget("dsa", eval_dsa=True) == Budget(iterations=1000, eval_epochs=1000)
    assert paper_budget("dcc", eval_dsa=True) == Budget(iterations=1000, eval_epochs=1000)  # DSAC
    assert paper_budget("dm", eval_dsa=True) == Budget(iterations=20000, eval_epochs=1000)
    assert paper_budget("dm", eval_dsa=False) == Budget(iterations=20000, eval_epochs=1000)  # main_DM keeps 1000
    assert paper_budget("mtt", eval_dsa=True) is None
    assert paper_budget("sre2l", eval_dsa=False) == Budget(iterations=1000, eval_epochs=400)  # recover/relabel_cifar
    assert paper_budget("cda", eval_dsa=False) == Budget(iterations=4000, eval_epochs=400)  # recover_cda_tiny


def test_shortfall_names_each_budget_a_run_falls_short_of():
    assert shortfall("dm", iterations=20000, eval_epochs=1000, eval_dsa=True) is None
    assert shortfall("dm", iterations=30000, eval_epochs=None, eval_dsa=True) is None  # not evaluated
    assert shortfall("dm", iterations=100, eval_epochs=300, eval_dsa=True) == (
        "shortened protocol: 100 of 20,000 iterations, 300 of 1,000 evaluation epochs")
    assert shortfall("dc", iterations=1000, eval_epochs=299, eval_dsa=False) == (
        "shortened protocol: 299 of 300 evaluation epochs")
    assert shortfall("dc", iterations=999, eval_epochs=300, eval_dsa=False) == (
        "shortened protocol: 999 of 1,000 iterations")
    assert shortfall("dc", iterations=1000, eval_epochs=300, eval_dsa=True) == (
        "shortened protocol: 300 of 1,000 evaluation epochs")
    assert shortfall("mtt", iterations=1, eval_epochs=1, eval_dsa=False) is None
