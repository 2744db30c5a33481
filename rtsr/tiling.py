"""Upscaling large frames in overlapping tiles whose joins are invisible.

Each tile is run with `overlap` input pixels of real context on every side that has a
neighbour, and only its core is kept. With an overlap at least the network's receptive-field
radius, every kept output pixel sees exactly the input it would see untiled, so the result
equals the untiled one (up to float rounding).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Tile:
    """One tile of an H x W frame: the input it reads (core plus overlap, clipped to the frame)
    and the core it contributes, as (y0, y1, x0, x1) input pixels."""

    context: tuple[int, int, int, int]
    core: tuple[int, int, int, int]

    def output_slices(self, scale: int) -> tuple[slice, slice]:
        """Where the core lands in the upscaled frame (rows, columns)."""
        y0, y1, x0, x1 = self.core
        return slice(y0 * scale, y1 * scale), slice(x0 * scale, x1 * scale)

    def core_slices(self, scale: int) -> tuple[slice, slice]:
        """The core's part of the upscaled context (rows, columns)."""
        (cy0, _, cx0, _), (y0, y1, x0, x1) = self.context, self.core
        return slice((y0 - cy0) * scale, (y1 - cy0) * scale), slice((x0 - cx0) * scale, (x1 - cx0) * scale)


def tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """The tiles of a frame, row by row; one tile (the whole frame) when it fits in `tile`."""
    if height <= tile and width <= tile:
        return [Tile((0, height, 0, width), (0, height, 0, width))]
    return [Tile((max(0, y0 - overlap), min(height, y1 + overlap), max(0, x0 - overlap), min(width, x1 + overlap)),
                 (y0, y1, x0, x1))
            for y0, y1 in tile_spans(height, tile) for x0, x1 in tile_spans(width, tile)]


def upscale_tiled(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: int,
                  tile: int, overlap: int, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """run() over overlapping tiles of x (N x C x H x W); returns N x C x sH x sW.
    `progress(done, total)` after each tile."""
    n, c, h, w = x.shape
    parts = tiles(h, w, tile, overlap)
    out: torch.Tensor | None = None
    for done, t in enumerate(parts, 1):
        cy0, cy1, cx0, cx1 = t.context
        result = run(x[:, :, cy0:cy1, cx0:cx1])
        if len(parts) == 1:
            out = result
        else:
            if out is None:
                out = result.new_empty((n, result.shape[1], h * scale, w * scale))
            out[(..., *t.output_slices(scale))] = result[(..., *t.core_slices(scale))]
        if progress:
            progress(done, len(parts))
    assert out is not None
    return out
