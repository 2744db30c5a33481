"""`rtsr.Upscaler`: the API a host program calls every frame.

It owns what every backend would otherwise repeat: host/device conversion, batching and
tiling. A backend owns only how to run the network.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import overload

import numpy as np
import torch

from rtsr.backends import Backend, create_backend
from rtsr.devices import resolve_device
from rtsr.errors import RtsrError
from rtsr.memory import fit_to_device
from rtsr.models.weights import load_weights, resolve_model
from rtsr.settings import RuntimeSettings, load_settings
from rtsr.tiling import receptive_radius, tiles, upscale_tiled

MIN_SIDE = 24  # LR pixels: narrower frames are edge-padded to this (small_frame_padding)

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]  # (done, total) model calls


class Upscaler:
    """Upscale RGB frames with a shipped (or given) SRGAN generator.

    >>> up = Upscaler("srgan-x4-lite", device="cpu")
    >>> up(np.zeros((90, 160, 3), np.uint8)).shape
    (360, 640, 3)

    `precision`: "auto" (fp16 on CUDA; on the CPU bf16 where it has native bf16, else fp32),
    "fp32", "bf16" (CPU only) or "fp16" (CUDA only); `self.precision` says what runs.

    Numpy frames (H x W x 3 or N x H x W x 3, uint8 or uint16 RGB) come back as numpy arrays of the
    same dtype, written tile by tile into the result; torch tensors
    (3 x H x W or N x 3 x H x W, float in [0, 1]) come back as tensors of the same dtype on the
    same device, without a host round trip when they already are on the upscaler's device.

    Not thread-safe: an Upscaler's backend reuses state between calls (the torch backend's CUDA
    graphs replay into shared static input/output buffers; TensorRT's execution contexts hold the
    shapes and addresses of the call in flight). Call one Upscaler from one thread at a time, or
    give each thread (and each GPU) its own Upscaler.
    """

    def __init__(self, model: str | Path | None = None, backend: str = "auto",
                 device: str | torch.device | None = None, tile: int | None = None,
                 tile_overlap: int | None = None, batch: int | None = None,
                 settings: RuntimeSettings | None = None, precision: str = "auto") -> None:
        self.settings = settings or load_settings()
        self.weights_path = resolve_model(model or self.settings.model)
        generator, self.card = load_weights(self.weights_path)
        self.device = resolve_device(device)
        self.scale = generator.scale
        self.tile = tile if tile is not None else self.settings.tile_for(self.device.type)
        if self.tile < 16:
            raise RtsrError(f"tile size {self.tile} is too small (16 pixels at least)")
        self.tile_overlap = tile_overlap if tile_overlap is not None else (
            self.settings.tile_overlap if self.settings.tile_overlap is not None else receptive_radius(generator.config))
        self.batch = batch if batch is not None else self.settings.batch_for(self.device.type)
        if self.batch < 1:
            raise RtsrError("batch must be at least 1")
        # on a GPU the defaults shrink to what its memory holds; what the caller set stays
        self.tile, self.batch = fit_to_device(generator.config, self.device, self.tile, self.batch, self.tile_overlap,
                                              4 if precision == "fp32" else 2, fixed_tile=tile is not None,
                                              fixed_batch=batch is not None)
        # the largest input a backend will see: a whole batch of tiles with their overlap
        self.backend: Backend = create_backend(backend, generator, self.device, max_batch=self.batch,
                                               max_side=self.tile + 2 * self.tile_overlap, precision=precision,
                                               cache_mib=self.settings.cache_mib)
        # what the network computes in: "fp32", "bf16" (CPU autocast) or "fp16"; TensorRT plans are fp16
        self.precision: str = getattr(self.backend, "precision", "fp16")
        log.info("model %s (x%d) on %s via %s (%s), tile %d+%d, batch %d", self.card.name, self.scale, self.device,
                 self.backend.name, self.precision, self.tile, self.tile_overlap, self.batch)

    @torch.inference_mode()
    def upscale_tensor(self, x: torch.Tensor, stream: "torch.cuda.Stream | None" = None,
                       progress: Progress | None = None) -> torch.Tensor:
        """N x 3 x H x W in [0, 1] on self.device -> N x 3 x sH x sW in the backend's dtype."""
        top, bottom, left, right = small_frame_padding(x.shape[-2], x.shape[-1])
        if top + bottom + left + right:
            x = torch.nn.functional.pad(x.float(), (left, right, top, bottom), mode="replicate")
        x = x.to(self.backend.dtype)
        chunks = x.split(self.batch)
        parts = [upscale_tiled(lambda t: self.backend.run(t, stream), chunk, self.scale, self.tile, self.tile_overlap,
                               _chunk_progress(progress, i, len(chunks)))
                 for i, chunk in enumerate(chunks)]
        y = parts[0] if len(parts) == 1 else torch.cat(parts)
        s = self.scale
        return y[..., top * s:y.shape[-2] - bottom * s, left * s:y.shape[-1] - right * s]

    def tile_count(self, height: int, width: int) -> int:
        """Model calls one frame of this size takes (1 when it is not tiled)."""
        return len(tiles(height, width, self.tile, self.tile_overlap))

    @overload
    def __call__(self, frames: np.ndarray, progress: Progress | None = None) -> np.ndarray: ...
    @overload
    def __call__(self, frames: torch.Tensor, progress: Progress | None = None) -> torch.Tensor: ...

    def __call__(self, frames: np.ndarray | torch.Tensor, progress: Progress | None = None) -> np.ndarray | torch.Tensor:
        """`progress(done, total)` is called after each model call (a tile or a whole batch)."""
        if isinstance(frames, torch.Tensor):
            return self._call_tensor(frames, progress)
        if isinstance(frames, np.ndarray):
            return self._call_numpy(frames, progress)
        raise RtsrError(f"Upscaler takes a numpy array or a torch tensor, not {type(frames).__name__}")

    @torch.inference_mode()
    def _call_tensor(self, frames: torch.Tensor, progress: Progress | None) -> torch.Tensor:
        single = frames.ndim == 3
        x = frames[None] if single else frames
        if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
            raise RtsrError(f"tensor frames must be float (N x) 3 x H x W, got {tuple(frames.shape)} {frames.dtype}")
        y = self.upscale_tensor(x.to(self.device, non_blocking=True), progress=progress)
        y = y.to(device=frames.device, dtype=frames.dtype)
        return y[0] if single else y

    @torch.inference_mode()
    def _call_numpy(self, frames: np.ndarray, progress: Progress | None) -> np.ndarray:
        """Tile by tile into a preallocated result of the input's dtype: memory is the result plus
        a few tiles, however large the frame."""
        single = frames.ndim == 3
        x = frames[None] if single else frames
        if x.ndim != 4 or x.shape[3] != 3 or x.dtype not in (np.uint8, np.uint16):
            raise RtsrError(f"numpy frames must be uint8 or uint16 (N x) H x W x 3 RGB, got {frames.shape} {frames.dtype}")
        pad_top, pad_bottom, pad_left, pad_right = small_frame_padding(x.shape[1], x.shape[2])
        padded = pad_top + pad_bottom + pad_left + pad_right > 0
        if padded:
            x = np.pad(x, ((0, 0), (pad_top, pad_bottom), (pad_left, pad_right), (0, 0)), mode="edge")
        n, h, w, _ = x.shape
        top = float(np.iinfo(x.dtype).max)
        out = np.empty((n, h * self.scale, w * self.scale, 3), x.dtype)
        parts = tiles(h, w, self.tile, self.tile_overlap)
        total, done = math.ceil(n / self.batch) * len(parts), 0
        for first in range(0, n, self.batch):
            for t in parts:
                cy0, cy1, cx0, cx1 = t.context
                region = x[first:first + self.batch, cy0:cy1, cx0:cx1]
                # uint16 has few torch kernels: its tiles travel as int32
                host = torch.from_numpy(np.ascontiguousarray(region) if x.dtype == np.uint8 else region.astype(np.int32))
                if self.device.type == "cuda":
                    host = host.pin_memory()
                dev = host.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
                y = self.backend.run(dev.to(self.backend.dtype).div_(top))[(..., *t.core_slices(self.scale))]
                y = y.float().mul_(top).round_().clamp_(0, top)  # float32: 65535 overflows float16
                out[(slice(first, first + self.batch), *t.output_slices(self.scale))] = (
                    y.to(torch.uint8 if x.dtype == np.uint8 else torch.int32).permute(0, 2, 3, 1).cpu().numpy())
                done += 1
                if progress:
                    progress(done, total)
        if padded:
            s = self.scale
            out = np.ascontiguousarray(out[:, pad_top * s:(h - pad_bottom) * s, pad_left * s:(w - pad_right) * s])
        return out[0] if single else out


def small_frame_padding(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) edge pixels to add to a frame with a side under MIN_SIDE.

    The network pads with zeros; on a picture a few pixels high its receptive field is mostly
    padding, and a flat 1 x 40 colour came out of srgan-x4-lite a third darker and without its blue.
    Edge-replicated to MIN_SIDE (the LR side of a training patch) it sees what it was trained on;
    the output is cropped back.
    """
    def split(side: int) -> tuple[int, int]:
        extra = max(0, MIN_SIDE - side)
        return extra // 2, extra - extra // 2

    return (*split(height), *split(width))


def _chunk_progress(progress: Progress | None, index: int, chunks: int) -> Progress | None:
    """progress(done, total) over all chunks, from one chunk's own count."""
    if progress is None:
        return None
    return lambda done, total: progress(index * total + done, chunks * total)
