"""Timestamps for decoded frames: every frame gets one, and they always increase.

Real files do not give every decoded frame a usable pts. Raw elementary streams (.h264, .m2v,
.mpv) have none; AVIs with packed B-frames (DivX/Xvid) hand out the right timestamps on the
wrong frames (1, 2, 3, 5, 4, 6); streams without reorder information make the decoder emit some
frames early. Dropping the frames whose pts does not increase (what an encoder's need for
increasing pts suggests) loses a third of such files. The decoder's output order is the display
order, so the clock keeps a few frames back and gives them the timestamps seen so far in sorted
order: a label swapped between neighbours is put right, a healthy stream keeps its own. A frame
with no timestamp at all comes one frame after the last; one that still would not increase (a
damaged stream) is moved just past the last, and counted.
"""
from __future__ import annotations

import heapq
from collections import deque
from fractions import Fraction

import av


class FrameClock:
    """Times the decoded frames of one stream (in its time base), a few frames behind the decoder."""

    def __init__(self, time_base: Fraction, rate: Fraction | None, first: int = 0, depth: int = 4) -> None:
        # one frame at the nominal rate, in ticks; 1 tick where the rate is unknown
        self.step = max(1, round(1 / (rate * time_base))) if rate else 1
        self.first = first
        self.depth = depth
        self.last: int | None = None
        self.repaired = 0             # frames moved past the previous one: a damaged stream
        self._frames: deque[av.VideoFrame] = deque()
        self._stamps: list[int] = []  # timestamps of the frames held, smallest first

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        """Take a decoded frame; return the frames whose timestamp is now settled (pts set)."""
        stamp = frame.pts if frame.pts is not None else frame.dts
        if stamp is not None:
            heapq.heappush(self._stamps, stamp)
        self._frames.append(frame)
        return [self._settle() for _ in range(len(self._frames) - self.depth)]

    def flush(self) -> list[av.VideoFrame]:
        """The frames still held, at the end of the stream."""
        return [self._settle() for _ in range(len(self._frames))]

    def _settle(self) -> av.VideoFrame:
        frame = self._frames.popleft()
        ts = heapq.heappop(self._stamps) if self._stamps else None
        if ts is None:  # a raw stream: timed by the frame rate, as FFmpeg does
            ts = self.first if self.last is None else self.last + (frame.duration or self.step)
        elif self.last is not None and ts <= self.last:
            ts = self.last + 1
            self.repaired += 1
        frame.pts = self.last = ts
        return frame
