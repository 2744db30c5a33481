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
from rtsr.video.color import RANGE_LIMITED, SPACE_BT709, SPACE_SMPTE170M, YUV420_FORMATS, ColorSpec
from rtsr.video.deinterlace import Deinterlacer
from rtsr.video.timestamps import FrameClock

log = logging.getLogger(__name__)
END = object()  # end-of-stream marker on the queue


@dataclass
class VideoItem:
    """One decoded frame: its Y, U, V planes one after another (see `packed_planes`)."""

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
    sample_aspect_ratio: Fraction | None = None  # pixel shape (anamorphic DVD/broadcast); x4 keeps it
    timecode: str | None = None                 # a MOV/MXF start timecode, written back as a tag
    origin: float = 0.0        # the file's first timestamp in seconds: --start/--end count from it
    attachments: tuple[int, ...] = ()           # attachment streams (fonts of Matroska subtitles)
    end: float | None = None   # where the container says the video ends (seconds), if it says
    container_frames: int | None = None  # the stream's frame count as the container records it (mp4):
                                         # fewer decoded means the input ends early

    @property
    def padded_hw(self) -> tuple[int, int]:
        """Frame size as the reader delivers it: odd sides padded to even (see `packed_planes`)."""
        return self.height + self.height % 2, self.width + self.width % 2


def packed_planes(frame: av.VideoFrame) -> np.ndarray:
    """A yuv420p/yuv444p (or their 10le) frame's Y, U, V planes, flat, for a padded_hw-sized frame.

    4:2:0 holds one chroma sample per 2x2 luma block, so an odd-sized frame already has chroma
    for a padded even size; Y (and 4:4:4 chroma) gains a last row/column, repeated from its edge.
    The pipeline crops the padding off the upscaled frame.
    """
    full_chroma = frame.planes[1].width == frame.width
    if frame.width % 2 == 0 and frame.height % 2 == 0 and not full_chroma:
        return frame.to_ndarray()  # PyAV's own packing: the same plane order
    dtype = np.dtype("<u2" if frame.format.name.endswith("10le") else "u1")
    h, w = frame.height + frame.height % 2, frame.width + frame.width % 2
    planes = []
    for i, p in enumerate(frame.planes):
        a = np.frombuffer(p, dtype).reshape(-1, p.line_size // dtype.itemsize)[: p.height, : p.width]
        want_h, want_w = (h, w) if i == 0 or full_chroma else (h // 2, w // 2)
        planes.append(np.pad(a, ((0, want_h - a.shape[0]), (0, want_w - a.shape[1])), mode="edge").ravel())
    return np.concatenate(planes)


def open_input(path: Path) -> av.container.InputContainer:
    """Open a media file, turning PyAV's errors into one readable line."""
    if not path.is_file():
        raise RtsrError(f"input not found: {path}")
    try:
        # titles in Latin-1 (RealMedia, old AVIs) are not UTF-8: PyAV would raise UnicodeDecodeError
        container = av.open(str(path), mode="r", metadata_errors="replace")
    except av.error.InvalidDataError:
        raise RtsrError(f"{path} is not a video file (or it is corrupt)") from None
    except av.error.FFmpegError as exc:
        raise RtsrError(f"cannot open {path}: {exc.strerror or exc}") from None
    # PyAV turns on FFmpeg's genpts, which gives a packet without a pts the dts of the next one: an
    # H.264 AVI's frames then come out one frame late. Off, as in ffmpeg, frames keep their dts.
    container.flags &= ~av.container.Flags.gen_pts.value
    return container


def _unfilled_audio(stream: av.stream.Stream) -> bool:
    """An audio track a stream table declares but the file never fills (a cut MPEG-TS): FFmpeg
    finds no sample rate, and writing the output's header would fail on it."""
    return stream.type == "audio" and stream.codec_context is not None and not stream.codec_context.sample_rate


def _color(ctx: av.video.codeccontext.VideoCodecContext) -> ColorSpec:
    """The colour the reader delivers in: the source's tags, or for an RGB source (libx264rgb, PNG or
    FFV1 RGB) the BT.601/709 limited range YUV that `_to_path_format` converts it into; 4:4:4 where
    the source's chroma is finer than 4:2:0 (RGB, 4:4:4, 4:2:2)."""
    fmt = ctx.format
    if fmt is not None and fmt.is_rgb:
        space = SPACE_BT709 if ctx.height >= 720 else SPACE_SMPTE170M
        return ColorSpec.from_tags(space, RANGE_LIMITED, ctx.color_primaries, ctx.color_trc, ctx.height,
                                   _bit_depth(fmt), full_chroma=True)
    return ColorSpec.from_tags(ctx.colorspace, ctx.color_range, ctx.color_primaries, ctx.color_trc, ctx.height,
                               _bit_depth(fmt), full_chroma=_finer_than_420(fmt))


def _finer_than_420(fmt: "av.VideoFormat | None") -> bool:
    """More chroma samples than 4:2:0's one per 2x2 luma block (4:2:2, 4:4:0, 4:4:4): the model
    would lose them to 4:2:0 (measured on a 4:4:4 photo clip: 0.25 dB of Y gain over bicubic)."""
    if fmt is None or len(fmt.components) < 3:
        return False
    probe = av.VideoFormat(fmt.name, 16, 16).components
    return probe[1].width * probe[1].height * 4 > 16 * 16


def _timecode(container: av.container.InputContainer, video: av.stream.Stream) -> str | None:
    """The start timecode: MOV keeps it in a tmcd data track's tags, MXF/MPEG in the file's or video's."""
    for tags in [video.metadata, container.metadata] + [s.metadata for s in container.streams if s.type == "data"]:
        if "timecode" in tags:
            return tags["timecode"]
    return None


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
                 max_frames: int | None = None, frames: bool = True, other_streams: bool = True) -> None:
        self.path = path
        self.frames = frames  # False: the copied streams' packets only, no video decoded (a segmented run's join)
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
        # the picture exactly as the stream declares it: libavcodec otherwise crops a left/top offset
        # only to its alignment (a 300x200 Theora picture came out 302 wide, then was rescaled)
        ctx.flags |= av.codec.context.Flags.unaligned
        w, h = ctx.width, ctx.height
        if w == 0 or h == 0:
            self.container.close()
            raise RtsrError(f"{path}: the video stream has no frame size")
        # --start/--end count from the file's first timestamp, as FFmpeg's -ss/-to do (an MPEG-TS
        # often starts at 1.4 s); the reader works in absolute seconds
        origin = self.container.start_time / av.time_base if self.container.start_time is not None else 0.0
        self.start = origin + start if start is not None else None
        self.end = origin + end if end is not None else None
        self.max_frames = max_frames
        self._note_dropped_streams()
        self.info = VideoInfo(
            width=w, height=h, time_base=self.stream.time_base,
            average_rate=self.stream.average_rate or self.stream.guessed_rate,
            frames=self._frame_estimate(),
            color=_color(ctx),
            # other_streams False: the video alone (a segment's file; the join copies the rest once)
            copy_streams=tuple(s.index for s in self.container.streams
                               if other_streams and s.index != self.stream.index
                               and s.type in ("audio", "subtitle") and not _unfilled_audio(s)),
            video_index=self.stream.index,
            sample_aspect_ratio=ctx.sample_aspect_ratio if ctx.sample_aspect_ratio else None,
            timecode=_timecode(self.container, self.stream),
            origin=origin,
            attachments=tuple(s.index for s in self.container.streams if other_streams and s.type == "attachment"),
            end=self._declared_end(),
            container_frames=self.stream.frames or None,
        )
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.skipped_packets = 0
        self.clock = self._new_clock()
        self.deinterlace = Deinterlacer()
        self.cut_at: float | None = None  # where the reader stopped before the input's end (seconds)
        self.frames_end: float | None = None  # where the last frame queued ends (seconds)
        self._emitted = 0
        self._resized = False
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtsr-reader", daemon=True)

    def _declared_end(self) -> float | None:
        s = self.stream
        if not s.duration:
            return None
        return float(((s.start_time or 0) + s.duration) * s.time_base)

    def _new_clock(self) -> FrameClock:
        return FrameClock(self.stream.time_base, self.info.average_rate,
                          self.stream.start_time if self.stream.start_time is not None else 0,
                          depth=max(4, self.stream.codec_context.has_b_frames + 2))

    def _note_dropped_streams(self) -> None:
        """Say which streams the output will not have, and why."""
        for s in self.container.streams:
            if s.type == "video" and s.index != self.stream.index:
                kind = "cover art" if s.disposition & av.stream.Disposition.attached_pic else "video stream"
                log.warning("%s #%d is not carried over: only the main video (#%d) is upscaled", kind, s.index,
                            self.stream.index)
            elif _unfilled_audio(s):
                log.warning("audio stream #%d (%s) is not copied: the file gives it no sample rate (no audio "
                            "packets were found), and no muxer takes it so", s.index, s.codec_context.name)
            elif s.type == "data":  # MOV timecode and MP4 chapter tracks: kept as a tag and as chapters
                log.info("data stream #%d (%s) is not copied; timecode and chapters are kept as such", s.index,
                         s.codec_context.name if s.codec_context else s.metadata.get("handler_name", "?"))

    @property
    def repaired_frames(self) -> int:
        """Frames whose timestamp had to be moved (a damaged stream); none is dropped."""
        return self.clock.repaired

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

    def _in_range(self, seconds: float, until: float | None = None) -> int:
        """-1 before the range, 0 inside, 1 after; `until`: where something shown from `seconds` ends."""
        if self.start is not None and seconds < self.start and (until is None or until <= self.start):
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
        """Decode from the keyframe before --start; where that seek lands past the start (MPEG-TS and
        -PS have no index, and a decoder drops what comes before the next keyframe), from the top."""
        if self.start is None or not self.frames:
            self._decode()
        elif not self._decode(seek_to=self.start):
            self.container.seek(0)
            self.stream.codec_context.flush_buffers()
            self.clock = self._new_clock()
            self._decode()

    def _decode(self, seek_to: float | None = None) -> bool:
        """Demux and decode to the end (or the range's end); False where a seek landed past --start."""
        if seek_to is not None:
            self.container.seek(int(seek_to / self.stream.time_base), stream=self.stream, backward=True)
        held: list[av.Packet] | None = [] if seek_to is not None else None  # copied packets until it is sure
        streams = ([self.stream] if self.frames else []) + [self.container.streams[i] for i in self.info.copy_streams]
        if not streams:  # no frames asked for and nothing to copy (PyAV would demux every stream for none)
            return True
        for packet in self.container.demux(streams):
            if self._stop.is_set():
                return True
            if packet.stream.index != self.stream.index:
                if held is not None:
                    held.append(packet)
                elif not self._copy(packet):
                    return True
                continue
            # packet.size == 0 is the demuxer's final flush packet: decoding it drains the decoder;
            # an empty packet with a time is Ogg Theora's "previous frame again", with no picture
            # (libavcodec refuses it with EINVAL): the previous frame lasts until the next one
            if packet.size == 0 and packet.pts is not None:
                continue
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                self.skipped_packets += 1
                log.warning("skipped a corrupt video packet at pts %s", packet.pts)
                continue
            if held is not None and frames:
                if frames[0].pts is not None and float(frames[0].pts * self.stream.time_base) > self.start:
                    log.info("seek landed past --start; decoding from the beginning")
                    return False
                if not all(self._copy(p) for p in held):
                    return True
                held = None
            for frame in frames:
                if not self._timed(self.clock.push(frame)):
                    return True
        if held is not None:  # not one frame after the seek: no keyframe between it and the end
            log.info("seek found no keyframe before the end; decoding from the beginning")
            return False
        if self._timed(self.clock.flush()):
            all(self._emit(ready) for ready in self.deinterlace.flush())
        return True

    def _timed(self, frames: list[av.VideoFrame]) -> bool:
        """Frames the clock has timed, on through the deinterlacer; False once the range is done."""
        return all(self._emit(ready) for frame in frames for ready in self.deinterlace(frame))

    def _copy(self, packet: av.Packet) -> bool:
        """Pass a packet of a copied stream on if it falls in the range; False to stop."""
        if packet.pts is not None:
            seconds = float(packet.pts * packet.time_base)
            # a subtitle already on screen at --start is kept (the writer trims it to the start)
            shown = packet.stream.type == "subtitle" and packet.duration
            until = seconds + float(packet.duration * packet.time_base) if shown else None
            if self._in_range(seconds, until) != 0:
                return True
        return not packet.size or self._put(PacketItem(packet, packet.stream.index))

    def _emit(self, frame: av.VideoFrame) -> bool:
        """Queue a frame that falls in the range; False once the range or --max-frames is done."""
        seconds = float(frame.pts * self.stream.time_base)
        where = self._in_range(seconds)
        if where < 0:
            return True
        if where > 0 or (self.max_frames is not None and self._emitted >= self.max_frames):
            self.cut_at = seconds
            return False
        rotation = int(frame.rotation)
        ok = self._put(VideoItem(packed_planes(self._to_path_format(frame)), frame.pts, self.stream.time_base, rotation))
        self._emitted += ok
        self.frames_end = seconds + float((frame.duration or self.clock.step) * self.stream.time_base)
        return ok

    def _to_path_format(self, frame: av.VideoFrame) -> av.VideoFrame:
        """The frame in the stream's first size and in the YUV format the path carries (input_pix_fmt)."""
        spec, (w, h) = self.info.color, (self.info.width, self.info.height)
        if (frame.width, frame.height) != (w, h) and not self._resized:
            self._resized = True
            log.warning("the video changes size mid-stream (%dx%d -> %dx%d); such frames are scaled to %dx%d",
                        w, h, frame.width, frame.height, w, h)
        if frame.format.name == spec.input_pix_fmt and (frame.width, frame.height) == (w, h):
            return frame
        # an RGB source goes into the matrix `_color` tagged it with; YUV keeps its own. The range is
        # always named: libswscale carries an RGB frame's full range into the YUV it makes unless
        # told (Y 3..255 where the path reads 16..235: a libx264rgb source came out 1.2x contrast)
        matrix = ("ITU709" if spec.matrix == "bt709" else "ITU601") if frame.format.is_rgb else None
        return frame.reformat(width=w, height=h, format=spec.input_pix_fmt, dst_colorspace=matrix,
                              dst_color_range="JPEG" if spec.full_range else "MPEG")
