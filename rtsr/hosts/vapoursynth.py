"""rtsr as a VapourSynth filter: `upscale(clip, ...)` -> the clip upscaled by `rtsr.Upscaler`.

    import vapoursynth as vs
    from rtsr.hosts.vapoursynth import upscale
    clip = vs.core.bs.VideoSource("input.mkv")
    upscale(clip, model="srgan-x4-lite").set_output()

RGB clips (RGBS/RGBH as the peers take, or integer RGB of 8-16 bits) go to the model as they are;
YUV clips are converted to RGBS and back by `core.resize`, following the clip's `_Matrix`,
`_Range` and `_ChromaLocation` (untagged: BT.709 from 720 lines, BT.601 below, limited range, as
`rtsr upscale` reads untagged video). The result has the input's format, 4x its size, and each
frame keeps its source frame's properties (durations, so VFR timing, colour tags, SAR).

VapourSynth asks for frames from several threads, in any order (seeking). The filter is a
`std.ModifyFrame` over a template clip: its callback runs one model call at a time under a lock
(an Upscaler is not thread-safe). With `batch` > 1 the callback of frame n is handed the source
frames n .. n+batch-1 (VapourSynth fetches them ahead, in parallel), upscales them in one call and
keeps the extra results for the requests that follow.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import vapoursynth as vs

from rtsr.errors import RtsrError
from rtsr.upscaler import Upscaler

log = logging.getLogger(__name__)
# untagged YUV, the way rtsr.video.color.ColorSpec.from_tags reads it (H.273 values, as VapourSynth's)
MATRIX_BT709, MATRIX_UNSPECIFIED, MATRIX_BT601 = 1, 2, 6


def upscale(clip: vs.VideoNode, model: str | Path | None = None, backend: str = "auto",
            device: str | None = None, tile: int | None = None, batch: int = 1,
            precision: str = "auto") -> vs.VideoNode:
    """`clip` upscaled by the model (default srgan-x4-steady, the video default) on `device` (default: the GPU if there is
    one); `tile`, `batch` and `precision` as `rtsr.Upscaler` takes them. Raises vs.Error."""
    if not isinstance(clip, vs.VideoNode):
        raise vs.Error(f"rtsr.upscale: clip must be a video clip, not {type(clip).__name__}")
    fmt = clip.format
    if fmt is None or clip.width == 0 or clip.height == 0:
        raise vs.Error("rtsr.upscale: the clip must have one format and size (variable ones are not supported)")
    if fmt.color_family not in (vs.RGB, vs.YUV):
        raise vs.Error(f"rtsr.upscale: {fmt.name} is not supported (RGB or YUV clips only)")
    if not isinstance(batch, int) or batch < 1:
        raise vs.Error(f"rtsr.upscale: batch must be a whole number of at least 1, not {batch!r}")
    try:
        upscaler = Upscaler(model, backend=backend, device=device, tile=tile, batch=batch, precision=precision)
    except RtsrError as exc:
        raise vs.Error(f"rtsr.upscale: {exc}") from None
    if fmt.color_family == vs.RGB:
        return vs.core.std.CopyFrameProps(_upscale_rgb(clip, upscaler, batch), clip)
    matrix, color_range, chromaloc = _yuv_tags(clip)
    rgb = clip.resize.Bicubic(format=vs.RGBS, matrix_in=matrix, range_in=color_range, chromaloc_in=chromaloc)
    back = _upscale_rgb(rgb, upscaler, batch).resize.Bicubic(format=fmt.id, matrix=matrix, range=color_range,
                                                             chromaloc=chromaloc)
    return vs.core.std.CopyFrameProps(back, clip)


def _yuv_tags(clip: vs.VideoNode) -> tuple[int, int, int]:
    """(matrix, range, chroma location) of a YUV clip from its first frame, defaults filled in."""
    props = clip.get_frame(0).props
    matrix = int(props.get("_Matrix", MATRIX_UNSPECIFIED))
    if matrix in (vs.MATRIX_RGB, MATRIX_UNSPECIFIED):
        matrix = MATRIX_BT709 if clip.height >= 720 else MATRIX_BT601
        log.info("untagged YUV clip read as %s", "BT.709" if matrix == MATRIX_BT709 else "BT.601")
    return matrix, int(props.get("_Range", vs.RANGE_LIMITED)), int(props.get("_ChromaLocation", vs.CHROMA_LEFT))


def _upscale_rgb(clip: vs.VideoNode, upscaler: Upscaler, batch: int) -> vs.VideoNode:
    """The RGB clip at the model's scale, in its own format."""
    scale = upscaler.scale
    template = vs.core.std.BlankClip(clip, width=clip.width * scale, height=clip.height * scale, keep=True)
    batch = min(batch, clip.num_frames)
    # source frames n .. n+batch-1 reach the callback of frame n; the last frame repeats past the end
    ahead = [clip] + [clip[k:] + clip[-1] * k for k in range(1, batch)]
    return vs.core.std.ModifyFrame(template, [template, *ahead], _Frames(upscaler, clip.format, clip.num_frames))


class _Frames:
    """The ModifyFrame callback: one model call at a time, results of a batch kept for the
    frames that follow it."""

    def __init__(self, upscaler: Upscaler, fmt: vs.VideoFormat, num_frames: int) -> None:
        self.upscaler, self.num_frames = upscaler, num_frames
        self.integer = fmt.sample_type == vs.INTEGER
        self.top = float((1 << fmt.bits_per_sample) - 1) if self.integer else 1.0
        self.lock = threading.Lock()
        self.ready: OrderedDict[int, np.ndarray] = OrderedDict()  # frame number -> 3 x H x W result

    def __call__(self, n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        out = f[0].copy()
        sources = f[1:1 + min(len(f) - 1, self.num_frames - n)]
        with self.lock:
            result = self.ready.pop(n, None)
            if result is None:
                results = self._run(sources)
                for k in range(1, len(sources)):
                    self.ready[n + k] = results[k]
                while len(self.ready) > 2 * (len(f) - 1):  # a seek leaves results nobody asks for
                    self.ready.popitem(last=False)
                result = results[0]
        for p in range(3):
            np.asarray(out[p])[:] = result[p]
        return out

    @torch.inference_mode()
    def _run(self, frames: list[vs.VideoFrame]) -> np.ndarray:
        """N x 3 x H x W in the clip's sample type, upscaled."""
        planes = np.stack([np.stack([np.asarray(frame[p]) for p in range(3)]) for frame in frames])
        x = torch.from_numpy(planes)
        x = x.float().div_(self.top) if self.integer else x
        y = self.upscaler(x)
        if self.integer:
            y = y.float().mul_(self.top).round_().clamp_(0, self.top).to(torch.int32)
        return y.numpy().astype(planes.dtype, copy=False)
