"""Fixtures for the audit tests: real CIFAR-10 test labels with held-out ResNet-20 probabilities."""

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def cifar_test_pred_probs(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels (932,), pred_probs (932, 10) float32) of the bundled ResNet-20 on cifar10/test.

    The ResNet-20 was trained on CIFAR-10's train split, so these probabilities are out-of-sample.
    """
    torch = pytest.importorskip("torch")
    from curate.models import create_model

    images = np.load(shared_data / "cifar10" / "test" / "images.npy")
    labels = np.load(shared_data / "cifar10" / "test" / "labels.npy")
    model = create_model("resnet20-cifar")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches on a shared 2-core machine run faster on one thread
    try:
        with torch.no_grad():
            logits = torch.cat([model(model.preprocess(images[a:a + 256])) for a in range(0, len(images), 256)])
    finally:
        torch.set_num_threads(threads)
    return labels, torch.softmax(logits, dim=1).numpy().astype(np.float32)
