"""Upscaling large frames in overlapping tiles whose joins are invisible.

Each tile is run with `overlap` input pixels of real context on every side that has a
neighbour, and only its core is kept. With an overlap at least the network's receptive-field
radius, every kept output pixel sees exactly the input it would see untiled, so the result
equals the untiled one (up to float rounding).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from rtsr.models.config import GeneratorConfig


def receptive_radius(config: GeneratorConfig) -> int:
    """Input pixels on each side that influence one output pixel of the generator."""
    radius = config.head_kernel // 2           # head conv
    radius += 2 * config.num_blocks + 1        # two 3x3 per block, then the body conv
    for stage in range(config.upsample_stages):
        radius += 1 / 2**stage                 # 3x3 conv at 2**stage times the input size
    radius += (config.head_kernel // 2) / config.scale  # tail conv at output size
    return math.ceil(radius)


def tile_spans(length: int, tile: int) -> Iterator[tuple[int, int]]:
    """Core spans [start, end) of at most `tile` pixels covering 0..length, sizes balanced."""
    count = max(1, math.ceil(length / tile))
    edges = [round(i * length / count) for i in range(count + 1)]
    yield from zip(edges[:-1], edges[1:])


def upscale_tiled(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: int,
                  tile: int, overlap: int) -> torch.Tensor:
    """run() over overlapping tiles of x (N x C x H x W); returns N x C x sH x sW."""
    n, c, h, w = x.shape
    if h <= tile and w <= tile:
        return run(x)
    out: torch.Tensor | None = None
    for y0, y1 in tile_spans(h, tile):
        for x0, x1 in tile_spans(w, tile):
            ty0, ty1 = max(0, y0 - overlap), min(h, y1 + overlap)
            tx0, tx1 = max(0, x0 - overlap), min(w, x1 + overlap)
            result = run(x[:, :, ty0:ty1, tx0:tx1])
            if out is None:
                out = result.new_empty((n, result.shape[1], h * scale, w * scale))
            out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = result[
                :, :, (y0 - ty0) * scale:(y1 - ty0) * scale, (x0 - tx0) * scale:(x1 - tx0) * scale]
    assert out is not None
    return out
