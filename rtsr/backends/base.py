"""The one interface every backend implements (see DESIGN.md)."""
from __future__ import annotations

from typing import Protocol

import torch

from rtsr.errors import RtsrError


class BackendUnavailable(RtsrError):
    """A backend that cannot run on this machine; the message says why."""


class Backend(Protocol):
    name: str
    scale: int
    device: torch.device
    dtype: torch.dtype  # what run() wants: float16 on GPU, float32 on CPU

    def run(self, x: torch.Tensor, stream: "torch.cuda.Stream | None" = None) -> torch.Tensor:
        """x: N x 3 x H x W in [0, 1] on self.device -> N x 3 x sH x sW in [0, 1]."""
        ...
