"""GPU memory: what a batch of tiles costs the generator, and the tile and batch that fit a device.

The generator's largest activations are at the output size: the last upsample stage's shuffled
C channels at `scale` times the input, beside the PReLU's (or the tail conv's) copy of them. At the
old CUDA default (8 tiles of 1040 x 1040 input at x4, 64 channels, fp16) one of them is 16.5 GiB,
more than most GPUs have, so the defaults are fitted to the GPU's memory before a backend is built.
"""
from __future__ import annotations

import logging

import torch

from rtsr.models.config import GeneratorConfig

log = logging.getLogger(__name__)

# Share of the GPU's memory the activations may take: TensorRT keeps up to two execution contexts
# (rtsr.backends.tensorrt.MAX_CONTEXTS), each with device memory for its profile's largest
# input, beside its workspace and the video stage's staging buffers.
MEMORY_SHARE = 0.4
MIN_TILE = 64  # below this the overlap costs more than the tile itself


def activation_bytes(config: GeneratorConfig, batch: int, side: int, bytes_per_value: int) -> int:
    """Peak activation memory of one call on `batch` inputs of `side` x `side` (overlap included):
    two C-channel tensors at the output size live at once."""
    return 2 * batch * config.channels * (side * config.scale) ** 2 * bytes_per_value


def fit_tile_and_batch(config: GeneratorConfig, budget: int, tile: int, batch: int, overlap: int,
                       bytes_per_value: int, fixed_tile: bool = False, fixed_batch: bool = False) -> tuple[int, int]:
    """The largest (tile, batch) at most the given ones whose activations fit `budget` bytes:
    the batch halves first (a smaller batch costs little speed on a GPU), then the tile; a value
    the caller fixed is kept. May still not fit when both are fixed or at their floor."""
    def cost(t: int, b: int) -> int:
        return activation_bytes(config, b, t + 2 * overlap, bytes_per_value)

    while not fixed_batch and batch > 1 and cost(tile, batch) > budget:
        batch //= 2
    while not fixed_tile and tile > MIN_TILE and cost(tile, batch) > budget:
        tile = max(MIN_TILE, tile // 2 // 8 * 8)
    return tile, batch


def fit_to_device(config: GeneratorConfig, device: torch.device, tile: int, batch: int, overlap: int,
                  bytes_per_value: int, fixed_tile: bool = False, fixed_batch: bool = False) -> tuple[int, int]:
    """`fit_tile_and_batch` against MEMORY_SHARE of `device`'s total memory (CUDA only; other devices
    keep their settings). Total, not free: the fit must come out the same in `rtsr build-engine` and
    in a later `rtsr upscale`, or upscale would ask for another plan and build it for minutes; what
    is free now only warns. Logs what it changed and why."""
    if device.type != "cuda":
        return tile, batch
    free, total = torch.cuda.mem_get_info(device)
    budget = int(total * MEMORY_SHARE)
    fitted = fit_tile_and_batch(config, budget, tile, batch, overlap, bytes_per_value, fixed_tile, fixed_batch)
    need = activation_bytes(config, fitted[1], fitted[0] + 2 * overlap, bytes_per_value)
    if fitted != (tile, batch):
        log.info("tile %d, batch %d -> tile %d, batch %d: activations %.1f GiB of the %.1f GiB of %s",
                 tile, batch, *fitted, need / 2**30, total / 2**30, device)
    if need > min(budget, free * MEMORY_SHARE):
        log.warning("tile %d x batch %d needs about %.1f GiB of activations, %.1f GiB free on %s: "
                    "it may run out of memory (lower --tile or --batch)", *fitted, need / 2**30, free / 2**30, device)
    return fitted
