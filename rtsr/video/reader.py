"""Demux + decode in a thread: video frames as YUV 4:2:0 planes, every other packet as is.

One `VideoItem` per decoded frame carries what the rest of the path needs (planes, pts,
time base, colour); audio/subtitle/data packets travel beside them untouched for stream copy.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from rtsr.errors import RtsrError
from rtsr.video.color import YUV420_FORMATS, ColorSpec

log = logging.getLogger(__name__)
END = object()  # end-of-stream marker on the queue


@dataclass
class VideoItem:
    """One decoded frame: its Y, U, V planes one after another (see `packed_yuv420`)."""

    yuv: np.ndarray
    pts: int
    time_base: Fraction
    rotation: int = 0  # display rotation in degrees, from the frame's display matrix


@dataclass
class PacketItem:
    """A packet of a copied (non-video) stream, by input stream index."""

    packet: av.Packet
    stream_index: int


@dataclass(frozen=True)
class VideoInfo:
    """What the reader learned about the input, for the pipeline and writer."""

    width: int
    height: int
    time_base: Fraction
    average_rate: Fraction | None
    frames: int | None          # estimate for the progress bar, if the container knows
    color: ColorSpec
    copy_streams: tuple[int, ...]
    video_index: int = 0       # the input stream the frames come from
    container_frames: int | None = None  # the stream's frame count as the container records it (mp4):
                                         # fewer decoded means the input ends early

    @property
    def padded_hw(self) -> tuple[int, int]:
        """Frame size as the reader delivers it: odd sides padded to even (see `packed_yuv420`)."""
        return self.height + self.height % 2, self.width + self.width % 2


def packed_yuv420(frame: av.VideoFrame) -> np.ndarray:
    """A yuv420p or yuv420p10le frame's Y, U, V planes, flat, for a padded_hw-sized 4:2:0 frame.

    4:2:0 holds one chroma sample per 2x2 luma block, so an odd-sized frame already has chroma
    for a padded even size; only Y gains a last row/column, repeated from its edge. The pipeline
    crops the padding off the upscaled frame.
    """
    if frame.width % 2 == 0 and frame.height % 2 == 0:
        return frame.to_ndarray()  # PyAV's own packing: the same plane order
    dtype = np.dtype("<u2" if frame.format.name.endswith("10le") else "u1")
    y, u, v = (np.frombuffer(p, dtype).reshape(-1, p.line_size // dtype.itemsize)[: p.height, : p.width]
               for p in frame.planes)
    y = np.pad(y, ((0, frame.height % 2), (0, frame.width % 2)), mode="edge")
    return np.concatenate((y.ravel(), u.ravel(), v.ravel()))


def open_input(path: Path) -> av.container.InputContainer:
    """Open a media file, turning PyAV's errors into one readable line."""
    if not path.is_file():
        raise RtsrError(f"input not found: {path}")
    try:
        return av.open(str(path), mode="r")
    except av.error.InvalidDataError:
        raise RtsrError(f"{path} is not a video file (or it is corrupt)") from None
    except av.error.FFmpegError as exc:
        raise RtsrError(f"cannot open {path}: {exc.strerror or exc}") from None


def _bit_depth(fmt: "av.VideoFormat | None") -> int:
    """8, or 10 for any deeper source: the depths the path carries (YUV420_FORMATS)."""
    bits = max((c.bits for c in fmt.components), default=8) if fmt is not None else 8
    return 8 if bits <= 8 else max(YUV420_FORMATS)


def probe_video(path: Path) -> VideoInfo:
    """What `path` holds, checked before a model is loaded: one line of error if it is no video."""
    reader = VideoReader(path, 1)
    reader.container.close()
    return reader.info


class VideoReader:
    """Decodes `path` on a background thread into a bounded queue of Video/PacketItems."""

    def __init__(self, path: Path, queue_size: int, start: float | None = None, end: float | None = None,
                 max_frames: int | None = None) -> None:
        self.path = path
        self.container = open_input(path)
        # FFmpeg's choice (av_find_best_stream): skips cover art, prefers the main picture
        self.stream = self.container.streams.best("video")
        if self.stream is None or self.stream.disposition & av.stream.Disposition.attached_pic:
            self.container.close()
            raise RtsrError(f"{path} has no video stream" + (" (only cover art)" if self.stream else ""))
        ctx = self.stream.codec_context
        if ctx is None:
            self.container.close()
            raise RtsrError(f"{path}: this FFmpeg build has no decoder for its video codec")
        self.stream.thread_type = "AUTO"
        w, h = ctx.width, ctx.height
        if w == 0 or h == 0:
            self.container.close()
            raise RtsrError(f"{path}: the video stream has no frame size")
        self.start, self.end, self.max_frames = start, end, max_frames
        self.info = VideoInfo(
            width=w, height=h, time_base=self.stream.time_base, average_rate=self.stream.average_rate,
            frames=self._frame_estimate(),
            color=ColorSpec.from_tags(ctx.colorspace, ctx.color_range, ctx.color_primaries, ctx.color_trc, h,
                                      _bit_depth(ctx.format)),
            copy_streams=tuple(s.index for s in self.container.streams
                               if s.index != self.stream.index and s.type in ("audio", "subtitle", "data")),
            video_index=self.stream.index,
            container_frames=self.stream.frames or None,
        )
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.skipped_packets = 0
        self.skipped_frames = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtsr-reader", daemon=True)

    def _frame_estimate(self) -> int | None:
        s = self.stream
        if s.frames and self.start is None and self.end is None and self.max_frames is None:
            return s.frames
        duration = float(s.duration * s.time_base) if s.duration else (
            self.container.duration / av.time_base if self.container.duration else None)
        if duration is None or not s.average_rate:
            return self.max_frames
        span = min(duration, self.end or duration) - (self.start or 0)
        estimate = max(0, round(span * float(s.average_rate)))
        return min(estimate, self.max_frames) if self.max_frames else estimate

    def start_thread(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a reader waiting on a full queue
            try:
                self.queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.05)
        self.container.close()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _in_range(self, seconds: float) -> int:
        """-1 before the range, 0 inside, 1 after."""
        if self.start is not None and seconds < self.start:
            return -1
        if self.end is not None and seconds >= self.end:
            return 1
        return 0

    def _run(self) -> None:
        try:
            self._decode_all()
        except BaseException as exc:  # handed to the main thread, which raises it
            self.error = exc
        finally:
            self._put(END)

    def _decode_all(self) -> None:
        if self.start:
            self.container.seek(int(self.start / self.stream.time_base), stream=self.stream, backward=True)
        streams = [self.stream] + [self.container.streams[i] for i in self.info.copy_streams]
        emitted, last_pts = 0, None
        for packet in self.container.demux(streams):
            if self._stop.is_set():
                return
            if packet.stream.index != self.stream.index:
                if packet.pts is not None and self._in_range(float(packet.pts * packet.time_base)) != 0:
                    continue
                if packet.size and not self._put(PacketItem(packet, packet.stream.index)):
                    return
                continue
            # packet.size == 0 is the demuxer's final flush packet: decoding it drains the decoder
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                self.skipped_packets += 1
                log.warning("skipped a corrupt video packet at pts %s", packet.pts)
                continue
            for frame in frames:
                if frame.pts is None or (last_pts is not None and frame.pts <= last_pts):
                    # damaged streams can repeat or reorder timestamps; encoders need them increasing
                    self.skipped_frames += 1
                    continue
                where = self._in_range(float(frame.pts * frame.time_base))
                if where < 0:
                    continue
                if where > 0 or (self.max_frames is not None and emitted >= self.max_frames):
                    return
                if frame.format.name != self.info.color.pix_fmt:
                    frame = frame.reformat(format=self.info.color.pix_fmt)
                if not self._put(VideoItem(packed_yuv420(frame), frame.pts, frame.time_base, int(frame.rotation))):
                    return
                emitted, last_pts = emitted + 1, frame.pts
