"""PyTorch backend: the BN-folded generator in eager mode, on the CPU or a CUDA GPU."""
from __future__ import annotations

import contextlib
import logging

import torch

from rtsr.models.srgan import Generator, fold_batchnorm

log = logging.getLogger(__name__)


class TorchBackend:
    """Runs the generator with BatchNorm folded, in inference mode; fp16 + channels_last on CUDA."""

    name = "torch"

    def __init__(self, generator: Generator, device: torch.device) -> None:
        self.device = device
        self.scale = generator.scale
        self.dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        self.model = fold_batchnorm(generator).to(device=device, dtype=self.dtype, memory_format=self.memory_format)
        log.info("torch backend on %s (%s)", device, str(self.dtype).removeprefix("torch."))

    @torch.inference_mode()
    def run(self, x: torch.Tensor, stream: "torch.cuda.Stream | None" = None) -> torch.Tensor:
        ctx = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
        with ctx:
            x = x.to(dtype=self.dtype, memory_format=self.memory_format)
            return self.model(x).clamp_(0, 1)
