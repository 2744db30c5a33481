"""Deinterlacing before the model: an interlaced picture upscaled as it is turns its combs into
large, sharp stripes.

FFmpeg's bwdif (in the filter graph PyAV exposes) makes one progressive frame per interlaced
frame ("send_frame"), so the frame count and timestamps stay the input's; it touches only frames
flagged interlaced, so a stream that mixes both passes its progressive frames through. bwdif works in a finer time
base of its own, so each output frame takes back the timestamp of its input frame (in order).
"""
from __future__ import annotations

import logging
from collections import deque

import av

log = logging.getLogger(__name__)


class Deinterlacer:
    """Frames in, frames out; a pass-through until the first interlaced frame arrives."""

    def __init__(self) -> None:
        self.graph: av.filter.Graph | None = None
        self._pts: deque[int] = deque()

    def _open(self, frame: av.VideoFrame) -> None:
        self.graph = av.filter.Graph()
        source = self.graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                       time_base=frame.time_base)
        bwdif = self.graph.add("bwdif", "mode=send_frame:parity=auto:deint=interlaced")
        source.link_to(bwdif)
        bwdif.link_to(self.graph.add("buffersink"))
        self.graph.configure()
        log.info("interlaced source: deinterlacing with bwdif, one frame per frame")

    def __call__(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        if self.graph is None:
            if not frame.interlaced_frame:
                return [frame]
            self._open(frame)
        self._pts.append(frame.pts)
        self.graph.push(frame)
        return self._pull()

    def flush(self) -> list[av.VideoFrame]:
        """The frames the filter still holds, at the end of the stream."""
        if self.graph is None:
            return []
        self.graph.push(None)
        return self._pull()

    def _pull(self) -> list[av.VideoFrame]:
        out = []
        while True:
            try:
                frame = self.graph.pull()
            except (BlockingIOError, EOFError):  # wants more input / drained
                return out
            frame.pts = self._pts.popleft()
            out.append(frame)
