"""The shared half of the model batch functions (predict, embed): load once, then run batches.

A batch function is built cheaply (it may hold a model, or a zero-argument factory that
builds one, so a remote executor can ship it and load the weights on the worker),
``setup()`` loads the model once, and ``__call__(batch)`` maps a decoded batch
``{"image": uint8 (B, H, W, 3), ...}`` to a dict of float32 arrays with B rows. Every
executor runs the same object.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from curate.learn.data import model_input
from curate.learn.device import resolve_device

ModelSource = nn.Module | Callable[[], nn.Module]


class ModelBatchFn:
    """Holds the model source and options; ``setup()`` puts the model in eval mode on the device.

    ``channels_last=None`` means channels-last on CPU (faster convolutions there) and
    contiguous elsewhere. A model passed in (not a factory) is modified in place.
    """

    def __init__(self, model: ModelSource, *, device: str = "auto", channels_last: bool | None = None):
        self.source = model
        self.device = device
        self.channels_last = channels_last
        self.model: nn.Module | None = None

    def setup(self) -> None:
        model = self.source if isinstance(self.source, nn.Module) else self.source()
        self._device = resolve_device(self.device)
        self._channels_last = self._device == "cpu" if self.channels_last is None else self.channels_last
        memory_format = torch.channels_last if self._channels_last else torch.contiguous_format
        self.model = model.eval().to(device=self._device, memory_format=memory_format)

    def inputs(self, batch: dict) -> torch.Tensor:
        """The batch's images as the model's float NCHW input on the device."""
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before the first batch")
        return model_input(self.model, batch["image"], device=self._device, channels_last=self._channels_last)
