"""The standard evaluation protocol of dataset condensation (``utils.evaluate_synset``).

Each run trains a fresh randomly initialized network on the synthetic set alone with
:func:`curate.learn.fit` (SGD, lr 0.01, momentum 0.9, weight decay 5e-4, batch 256) and
scores it on the real test images; the hook of the distillation plug-ins is never used
here. Methods distilled with DSA are evaluated with DSA (per image, one family per
batch) for 1000 epochs, the others without augmentation for 300 epochs; the lr drops x0.1
once at half-time (fit's ``halfway`` schedule), as in the official code. Accuracies are reported as mean, sample standard
deviation and the half-width of the Student-t 95% confidence interval of the mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from curate.condense.base import draw_seed
from curate.condense.train_data import SyntheticData
from curate.condense.driver import random_selection
from curate.condense.dsa import DEFAULT_STRATEGY, DSA
from curate.condense.synthetic_set import SyntheticSet
from curate.errors import UsageError
from curate.stats import summarize, t_quantile_975  # noqa: F401  (t_quantile_975: re-exported)

PROTOCOL_EPOCHS = {True: 1000, False: 300}  # with / without DSA


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
    lr_schedule: str = "halfway",
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    channels_last: bool = False,
    chunk: int | None = None,
) -> dict[str, Any]:
    """Test accuracy of ``runs`` fresh ``model`` networks trained on ``synthetic``: mean, std, ci95, runs.

    ``dsa`` (default: the method's protocol, ``synthetic.provenance["eval_dsa"]``) trains with
    DSA augmentation; ``epochs`` defaults to the protocol's 1000 with DSA and 300 without.
    ``test_images`` are uint8 (M, H, W, C) with ``test_labels`` (M,). ``channels_last`` is
    passed to ``fit``, and ``chunk`` as its ``micro_batch`` (None: 16 on CPU, 256 on a GPU,
    whole batches with BatchNorm).
    """
    from curate.learn import fit, predict_images
    from curate.learn.chunking import resolve_chunk
    from curate.models import create_model

    test_labels = np.asarray(test_labels)
    if len(test_images) != len(test_labels) or len(test_labels) == 0:
        raise UsageError(f"`test_images` has {len(test_images)} rows and `test_labels` {len(test_labels)}; "
                         "pass one label per test image (and at least one)")
    if not isinstance(runs, int) or runs < 1:
        raise UsageError(f"`runs` must be an integer >= 1, got {runs!r}")
    if dsa is None:
        dsa = bool(synthetic.provenance.get("eval_dsa", False))
    epochs = PROTOCOL_EPOCHS[dsa] if epochs is None else epochs
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
            fit(net, data, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
                lr_schedule=lr_schedule, seed=draw_seed(generator), device=device, progress=False,
                channels_last=channels_last, micro_batch=resolve_chunk(chunk, net, device))
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
