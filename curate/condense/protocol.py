"""The standard evaluation protocol of dataset condensation (``utils.evaluate_synset``).

Each run trains a fresh randomly initialized network on the synthetic set alone with
:func:`curate.learn.fit` (SGD, lr 0.01, momentum 0.9, weight decay 5e-4, batch 256) and
scores it on the real test images; the hook of the distillation plug-ins is never used
here. Methods distilled with DSA are evaluated with DSA (per image, one family per
batch) for E = 1000 epochs, the others without augmentation for E = 300. The schedule is
the official one (``evaluate_synset``): its loop runs ``range(E + 1)``, so E + 1 epochs,
and after epoch index ``E // 2 + 1`` the lr drops x0.1 and the SGD optimizer is built
anew (its momentum buffers start from zero); here that is two ``fit`` calls, each with a
fresh optimizer. Accuracies are reported as mean, sample standard deviation and the
half-width of the Student-t 95% confidence interval of the mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from curate.condense.base import draw_seed
from curate.condense.budgets import PROTOCOL_EPOCHS
from curate.condense.driver import random_selection
from curate.condense.dsa import DEFAULT_STRATEGY, DSA
from curate.condense.synthetic_set import SyntheticSet
from curate.condense.train_data import SyntheticData
from curate.errors import UsageError
from curate.stats import summarize, t_quantile_975  # noqa: F401  (t_quantile_975: re-exported)

OFFICIAL = "official"  # evaluate_synset's schedule; any other name is one of fit's lr schedules
LR_DROP = 0.1


def official_phases(epochs: int, lr: float) -> list[tuple[int, float]]:
    """``evaluate_synset``'s schedule for E = ``epochs``: ``[(n_epochs, lr), ...]``, one fresh SGD optimizer per phase.

    Its loop trains epoch indices 0..E and, after index ``E // 2 + 1``, multiplies the lr
    by 0.1 and rebuilds the optimizer: ``E // 2 + 2`` epochs at ``lr``, then ``E - E // 2 - 1``
    at ``lr / 10`` (none when E < 3).
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise UsageError(f"`epochs` must be an integer >= 1, got {epochs!r}")
    first = min(epochs + 1, epochs // 2 + 2)
    return [(n, rate) for n, rate in ((first, lr), (epochs + 1 - first, lr * LR_DROP)) if n]


def evaluate(
    synthetic: SyntheticSet,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    *,
    model: str = "convnet",
    model_config: dict[str, Any] | None = None,
    runs: int = 5,
    epochs: int | None = None,
    dsa: bool | None = None,
    dsa_strategy: str | None = None,
    batch_size: int = 256,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    lr_schedule: str = OFFICIAL,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    channels_last: bool = False,
    chunk: int | None = None,
) -> dict[str, Any]:
    """Test accuracy of ``runs`` fresh ``model`` networks trained on ``synthetic``: mean, std, ci95, runs.

    ``dsa`` (default: the method's protocol, ``synthetic.provenance["eval_dsa"]``) trains with
    DSA augmentation; ``epochs`` (E) defaults to the protocol's 1000 with DSA and 300 without.
    ``lr_schedule`` ``"official"`` is ``evaluate_synset``'s (:func:`official_phases`: E + 1
    epochs, lr x0.1 and a fresh optimizer after epoch index E // 2 + 1); another name is one
    of :func:`curate.learn.fit`'s schedules over E epochs (``"halfway"``: x0.1 at half-time,
    momentum kept: this module's schedule before it followed the official one).
    ``test_images`` are uint8 (M, H, W, C) with ``test_labels`` (M,). ``channels_last`` is
    passed to ``fit``, and ``chunk`` as its ``micro_batch`` (None: 16 on CPU, 256 on a GPU,
    whole batches with BatchNorm).
    """
    from curate.learn import fit, predict_images
    from curate.learn.chunking import resolve_chunk
    from curate.learn.fit import LR_SCHEDULES
    from curate.models import create_model

    if lr_schedule != OFFICIAL and lr_schedule not in LR_SCHEDULES:
        raise UsageError(f"`lr_schedule` must be one of {', '.join((OFFICIAL, *LR_SCHEDULES))}, got {lr_schedule!r}")

    test_labels = np.asarray(test_labels)
    if len(test_images) != len(test_labels) or len(test_labels) == 0:
        raise UsageError(f"`test_images` has {len(test_images)} rows and `test_labels` {len(test_labels)}; "
                         "pass one label per test image (and at least one)")
    if not isinstance(runs, int) or runs < 1:
        raise UsageError(f"`runs` must be an integer >= 1, got {runs!r}")
    if dsa is None:
        dsa = bool(synthetic.provenance.get("eval_dsa", False))
    epochs = PROTOCOL_EPOCHS[dsa] if epochs is None else epochs
    phases = official_phases(epochs, lr) if lr_schedule == OFFICIAL else [(epochs, lr)]
    schedule = "constant" if lr_schedule == OFFICIAL else lr_schedule
    strategy = dsa_strategy or synthetic.provenance.get("dsa_strategy") or DEFAULT_STRATEGY
    augment = DSA(strategy=strategy) if dsa else None
    generator = torch.Generator().manual_seed(seed)
    accuracies = []
    with tqdm(total=runs, desc="evaluate", unit="run", disable=not progress) as bar:
        for _ in range(runs):
            net = create_model(model, num_classes=synthetic.num_classes, weights=None, seed=draw_seed(generator),
                               **(model_config or {}))
            pre = net.preprocess
            x = synthetic.model_input(tuple(pre.mean), tuple(pre.std), tuple(pre.size))
            data = SyntheticData(x, synthetic.labels, num_classes=synthetic.num_classes, augment=augment)
            for phase_epochs, phase_lr in phases:  # each fit builds its own optimizer
                fit(net, data, epochs=phase_epochs, batch_size=batch_size, lr=phase_lr, momentum=momentum,
                    weight_decay=weight_decay, lr_schedule=schedule, seed=draw_seed(generator), device=device,
                    progress=False, channels_last=channels_last, micro_batch=resolve_chunk(chunk, net, device))
            probs = predict_images(net, test_images, batch_size=512, device=device)
            accuracies.append(float((probs.argmax(1) == test_labels).mean()))
            bar.update()
            bar.set_postfix(accuracy=f"{accuracies[-1]:.4f}")
    return summarize(accuracies)


def random_baseline(
    images: Any,
    labels: np.ndarray | None,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    *,
    ipc: int,
    seed: int = 0,
    model: str = "convnet",
    model_config: dict[str, Any] | None = None,
    **evaluate_options: Any,
) -> dict[str, Any]:
    """:func:`evaluate` on ``ipc`` random real images per class (the same protocol; ``dsa`` defaults off)."""
    chosen = random_selection(images, labels, ipc=ipc, seed=seed, model=model, model_config=model_config)
    return evaluate(chosen, test_images, test_labels, model=model, model_config=model_config, seed=seed,
                    **evaluate_options)
