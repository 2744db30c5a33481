"""Clips the project makes itself (tests, benchmarks, the README sample): no media is downloaded.

A clip pans a window across a photo; the window at full size is the ground truth and its
bicubic-downscaled copy is what gets encoded, so an upscaler can be scored frame by frame.
"""
from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from rtsr.quality import downscale_image

AUDIO_RATE = 48000


def pan_frames(photo: np.ndarray, size: tuple[int, int], count: int) -> list[np.ndarray]:
    """`count` crops of `size` (w, h) from `photo`, moving diagonally across it."""
    w, h = size
    ph, pw = photo.shape[:2]
    if w > pw or h > ph:
        raise ValueError(f"photo {pw}x{ph} is smaller than the window {w}x{h}")
    steps = max(count - 1, 1)
    return [np.ascontiguousarray(photo[round(i * (ph - h) / steps):round(i * (ph - h) / steps) + h,
                                       round(i * (pw - w) / steps):round(i * (pw - w) / steps) + w])
            for i in range(count)]


def low_res(frames: Sequence[np.ndarray], scale: int) -> list[np.ndarray]:
    return [downscale_image(f, scale) for f in frames]


def write_clip(path: Path, frames: Sequence[np.ndarray], fps: int = 24, pts: Sequence[int] | None = None,
               time_base: Fraction | None = None, audio: bool = True, crf: int = 12,
               colorspace: int | None = 1, color_range: int | None = 1) -> None:
    """Encode RGB frames as H.264 (+ AAC sine tone), with explicit pts for variable frame rate."""
    time_base = time_base or Fraction(1, fps)
    pts = list(pts) if pts is not None else list(range(len(frames)))
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as out:
        video = out.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.codec_context.time_base = time_base
        video.time_base = time_base
        if colorspace is not None:
            video.codec_context.colorspace = colorspace
        if color_range is not None:
            video.codec_context.color_range = color_range
        sound = out.add_stream("aac", rate=AUDIO_RATE, layout="stereo") if audio else None
        for frame_rgb, t in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(frame_rgb, format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace="itu709" if colorspace == 1 else "itu601",
                                   dst_color_range=color_range or 1)
            frame.pts, frame.time_base = t, time_base
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            duration = float((pts[-1] + 1) * time_base)
            samples = int(duration * AUDIO_RATE)
            t = np.arange(samples) / AUDIO_RATE
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = np.stack([tone[start:start + 1024]] * 2)
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="stereo")
                af.sample_rate, af.pts, af.time_base = AUDIO_RATE, start, Fraction(1, AUDIO_RATE)
                for packet in sound.encode(af):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
