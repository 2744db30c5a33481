"""Encode + mux in a thread: upscaled YUV frames with the input's pts, other streams copied.

Frames keep the input's timestamps and time base, so variable frame rate and the duration
survive; audio, subtitle and data packets are stream-copied, never re-encoded.
"""
from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from rtsr.errors import RtsrError
from rtsr.video.color import YUV420_FORMATS, ColorSpec
from rtsr.video.reader import END, PacketItem, VideoInfo

log = logging.getLogger(__name__)
DEFAULT_RATE = Fraction(30)
# tags a muxer computes or that describe the old encode (stream statistics, brands, encoder):
# not carried over, since they would be wrong for the new file
_STALE_TAGS = ("encoder", "duration", "major_brand", "minor_version", "compatible_brands", "bps",
               "number_of_frames", "number_of_bytes", "_statistics")
# encoders whose 10-bit profile players decode widely (HEVC Main10, AV1, VP9 profile 2); H.264's
# High 10 is not decoded by browsers or most hardware, so 10-bit sources go to H.264 as 8-bit
TEN_BIT_PLAYABLE = {"libx265", "hevc_nvenc", "libsvtav1", "av1_nvenc", "libvpx-vp9"}
# containers that store a presentation time apart from the decode time, so B-frames keep their
# timing; AVI, ASF/WMV, FLV, MPEG-PS and raw elementary streams do not (frames come out late,
# untimed or with dts going backwards)
REORDERING_CONTAINERS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".ts", ".m2ts", ".mts", ".3gp", ".3g2"}
# containers that hold only some video codecs: suffix -> the encoders they take
LIMITED_CONTAINERS = {".webm": {"libsvtav1", "av1_nvenc", "libvpx-vp9"}}


def _muxer_codecs(suffix: str) -> frozenset[str]:
    """The codecs FFmpeg's muxer for `suffix` takes (PyAV refuses any other at add_stream)."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            with av.open(os.path.join(folder, f"probe{suffix}"), mode="w") as probe:
                return frozenset(probe.supported_codecs)
        except (av.error.FFmpegError, ValueError):
            return frozenset()


def container_suffix(src: Path, codec: str) -> str:
    """The output container for `src`: its own where that holds `codec` with B-frames, else Matroska;
    but never one that would drop a copied audio or subtitle track (WMA does not go into Matroska:
    a .wmv then stays ASF, encoded without B-frames)."""
    own = src.suffix.lower()
    try:
        with av.open(str(src), metadata_errors="replace") as container:  # Latin-1 titles: see open_input
            copied = {s.codec_context.name for s in container.streams
                      if s.type in ("audio", "subtitle") and s.codec_context is not None}
    except (OSError, av.error.FFmpegError):  # not readable: the reader says so in its own words
        copied = set()
    reorders = own in REORDERING_CONTAINERS and codec in LIMITED_CONTAINERS.get(own, {codec})
    for suffix in ([own] if reorders else []) + [".mkv"] + ([own] if own else []):
        if copied <= _muxer_codecs(suffix):
            return suffix
    return ".mkv"


@dataclass(frozen=True)
class EncodeOptions:
    codec: str = "libx264"
    crf: int = 18
    preset: str = "veryfast"
    pix_fmt: str | None = None  # None: see output_pix_fmt

    def output_pix_fmt(self, source: ColorSpec) -> str:
        """The asked-for format, else the source's depth where the codec's 10-bit plays widely."""
        if self.pix_fmt:
            return self.pix_fmt
        if source.bit_depth > 8 and self.codec not in TEN_BIT_PLAYABLE:
            log.info("10-bit source encoded as 8-bit for %s playback; --pix-fmt %s or --codec libx265 keeps "
                     "10 bits", self.codec, source.pix_fmt)
            return YUV420_FORMATS[8]
        takes = [f.name for f in av.Codec(self.codec, "w").video_formats or []]
        if takes and source.pix_fmt not in takes:  # an encoder built without 10-bit (libvpx often is)
            log.info("%s in this FFmpeg build has no %s: encoding 8-bit", self.codec, source.pix_fmt)
            return YUV420_FORMATS[8]
        return source.pix_fmt

    def codec_options(self) -> dict[str, str]:
        """Quality/speed options in the names each encoder family uses."""
        if self.codec.endswith("_nvenc"):
            return {"cq": str(self.crf), "preset": self.preset if self.preset.startswith("p") else "p4"}
        if self.codec == "libsvtav1":
            return {"crf": str(self.crf), **({"preset": self.preset} if self.preset.isdigit() else {})}
        if self.codec == "libx265":  # x265 prints ~20 info lines per file to stderr unless told not to
            return {"crf": str(self.crf), "preset": self.preset, "x265-params": "log-level=error"}
        if self.codec == "libx264":
            return {"crf": str(self.crf), "preset": self.preset}
        return {}


def check_encoder(name: str) -> None:
    try:
        codec = av.codec.Codec(name, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        raise RtsrError(f"encoder '{name}' is not available in this FFmpeg build") from None
    if codec.type != "video":
        raise RtsrError(f"'{name}' is not a video encoder")


def _kept_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not any(stale in k.lower() for stale in _STALE_TAGS)}


def _shifted_chapters(chapters: list[dict], offset: Fraction, end: Fraction | None) -> list[dict]:
    """Chapters of an output holding input seconds [offset, end) (--start/--end): those outside
    dropped, the ones the range cuts trimmed to it, times made relative to the output."""
    kept = []
    for ch in chapters:
        shift = round(offset / ch["time_base"])
        stop = ch["end"] - shift if end is None else min(ch["end"], round(end / ch["time_base"])) - shift
        start = max(0, ch["start"] - shift)
        if stop > start:
            kept.append({**ch, "start": start, "end": stop})
    return kept


@dataclass
class FrameBatch:
    """Upscaled frames packed as 4:2:0 planes (N x sH*sW*3/2; uint8, or int16 holding 10-bit),
    ready once `ready` is done."""

    packed: torch.Tensor
    pts: list[int]
    time_base: Fraction
    rotation: int
    ready: "torch.cuda.Event | None" = None
    release: Callable[[], None] = field(default=lambda: None)


class VideoWriter:
    """Consumes FrameBatch/PacketItem from a bounded queue on its own thread."""

    def __init__(self, path: Path, info: VideoInfo, source: av.container.InputContainer | None, scale: int,
                 options: EncodeOptions, queue_size: int, offset_seconds: float = 0.0,
                 end_seconds: float | None = None, video_template: av.stream.Stream | None = None) -> None:
        """`video_template`: copy video packets encoded elsewhere (PacketItems of `info.video_index`,
        a segmented run's join) into a stream made from it, instead of encoding FrameBatches."""
        check_encoder(options.codec)
        self.width, self.height = info.width * scale, info.height * scale
        self.color: ColorSpec = info.color
        self.offset = Fraction(offset_seconds).limit_denominator(10**6)
        self.pix_fmt = options.output_pix_fmt(info.color)
        try:
            self.container = av.open(str(path), mode="w")
        except (av.error.FFmpegError, ValueError) as exc:
            raise RtsrError(f"cannot write {path.suffix} files: {exc}") from None
        self.video_index = info.video_index
        self.encoding = video_template is None
        if self.encoding:
            self.video = self._add_encoder(path, info, options)
        else:
            # opaque: the codec parameters as they are; without it PyAV looks for an encoder named
            # after the template's decoder (libdav1d for AV1) and fails
            self.video = self.container.add_stream_from_template(video_template, opaque=True)
            self.video.time_base = video_template.time_base
        if info.timecode:  # MOV writes it as a tmcd track, Matroska as a tag
            self.video.metadata["timecode"] = info.timecode
        if source is not None:  # a file's titles, languages, track flags and chapters travel with it
            self.container.metadata.update(_kept_tags(source.metadata))
            end = Fraction(end_seconds).limit_denominator(10**6) if end_seconds is not None else None
            self.container.set_chapters(_shifted_chapters(source.chapters(), self.offset, end))
            self.video.metadata.update(_kept_tags(source.streams[info.video_index].metadata))
        self.copied: dict[int, av.stream.Stream] = {}
        for index in info.copy_streams:
            template = source.streams[index]
            try:
                self.copied[index] = copied = self.container.add_stream_from_template(template)
            except (av.error.FFmpegError, ValueError) as exc:
                log.warning("dropping %s stream #%d (%s): %s cannot hold it (%s)", template.type, index,
                            template.codec_context.name if template.codec_context else "?", path.suffix, exc)
                continue
            copied.metadata.update(_kept_tags(template.metadata))
            copied.disposition = template.disposition
        for index in info.attachments:  # fonts that Matroska subtitles are drawn with
            self._attach(source.streams[index], path.suffix)
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.frames_written = 0
        self.busy_seconds = 0.0
        self.wait_seconds = 0.0   # of busy_seconds, waiting for the device to finish a batch
        self.error: BaseException | None = None
        # copied packets wait until the video has reached their time: the file is interleaved, and
        # what lies past the last frame of a --max-frames run can still be dropped at the end
        self._pending: list[PacketItem] = []
        self._video_seconds: float | None = None   # time of the last frame written
        self._cut_at: float | None = None
        self._aborted = False
        self._started = False
        self._thread = threading.Thread(target=self._run, name="rtsr-writer", daemon=True)
        self._thread.start()

    def _add_encoder(self, path: Path, info: VideoInfo, options: EncodeOptions) -> av.stream.Stream:
        try:
            video = self.container.add_stream(options.codec, rate=info.average_rate or DEFAULT_RATE,
                                              options=options.codec_options())
        except ValueError:  # PyAV: "'gif' format does not support 'libsvtav1' codec"
            self.container.close()
            raise RtsrError(f"a {path.suffix} file cannot hold {options.codec} video; choose another -o "
                            f"extension (.mkv holds them all)") from None
        ctx = video.codec_context
        ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, self.pix_fmt
        if path.suffix.lower() not in REORDERING_CONTAINERS:
            log.info("%s cannot time B-frames: encoding without them", path.suffix)
            ctx.max_b_frames = 0
        if info.sample_aspect_ratio:  # x4 in both directions keeps the pixel shape
            ctx.sample_aspect_ratio = info.sample_aspect_ratio
        ctx.time_base = info.time_base
        video.time_base = info.time_base
        ctx.colorspace, ctx.color_range = info.color.colorspace, info.color.color_range
        ctx.color_primaries, ctx.color_trc = info.color.color_primaries, info.color.color_trc
        return video

    def _attach(self, stream: av.stream.AttachmentStream, suffix: str) -> None:
        try:
            self.container.add_attachment(stream.name, stream.mimetype, stream.data)
        except (av.error.FFmpegError, ValueError) as exc:
            log.warning("dropping attachment %s: %s cannot hold attachments (%s)", stream.name, suffix, exc)

    def put(self, item: object) -> None:
        """Queue an item; raise the writer's own error instead of blocking on a dead writer."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self, cut_at: float | None = None) -> None:
        """Flush the encoder, write the trailer and close; raise any error the thread had.

        `cut_at`: where the reader stopped before the input's end (seconds); copied packets from there
        on are dropped, so the audio ends with the video."""
        self._cut_at = cut_at
        self.put(END)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Stop without finishing the file (it is deleted by the caller)."""
        self._aborted = True  # the thread skips what is queued and stops at END
        if self._thread.is_alive():
            while True:
                try:
                    self.queue.put(END, timeout=0.1)
                    break
                except queue.Full:
                    if not self._thread.is_alive():
                        break
            self._thread.join()
        try:
            self.container.close()
        except av.error.FFmpegError:
            pass

    def _run(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if item is END:
                    break
                if self._aborted:
                    if isinstance(item, FrameBatch):
                        item.release()
                    continue
                start = time.perf_counter()
                if isinstance(item, FrameBatch):
                    self._write_frames(item)
                elif item.stream_index == self.video_index:
                    self._copy_video(item.packet)
                else:
                    self._pending.append(item)
                self.busy_seconds += time.perf_counter() - start
            if self._aborted:
                return
            for packet in self.video.encode(None) if self.encoding else ():
                self.container.mux(packet)
            self._flush_pending(self._cut_at)
            self.container.close()
        except BaseException as exc:  # raised in the main thread by put()/finish()
            self.error = exc
            # drain so a producer blocked on put() sees the error
            while True:
                try:
                    item = self.queue.get(timeout=0.5)
                except queue.Empty:
                    break
                if isinstance(item, FrameBatch):
                    item.release()
                if item is END:
                    break

    def _ticks(self, time_base: Fraction) -> int:
        return round(self.offset / time_base)

    def _write_frames(self, batch: FrameBatch) -> None:
        if not self._started:
            if batch.rotation:
                self.video.set_display_rotation(batch.rotation)
            self._started = True
        if batch.ready is not None:  # the device's download: its time is the device stage's, not ours
            waited = time.perf_counter()
            batch.ready.synchronize()
            self.wait_seconds += time.perf_counter() - waited
        packed: np.ndarray = batch.packed.numpy()
        if packed.dtype == np.int16:
            packed = packed.view(np.uint16)  # 10-bit code values, as yuv420p10le stores them
        shift = self._ticks(batch.time_base)
        try:
            for row, pts in zip(packed, batch.pts):
                frame = av.VideoFrame.from_ndarray(row.reshape(self.height * 3 // 2, self.width),
                                                   format=self.color.pix_fmt)
                frame.colorspace, frame.color_range = self.color.colorspace, self.color.color_range
                if self.pix_fmt != self.color.pix_fmt:
                    frame = frame.reformat(format=self.pix_fmt)
                frame.pts, frame.time_base = pts - shift, batch.time_base
                for packet in self.video.encode(frame):
                    self.container.mux(packet)
                self.frames_written += 1
        finally:
            batch.release()
        self._video_seconds = float((batch.pts[-1]) * batch.time_base)
        self._flush_pending(self._video_seconds)

    def _copy_video(self, packet: av.Packet) -> None:
        """A video packet encoded elsewhere (in decode order, on the input's clock)."""
        seconds = float(packet.pts * packet.time_base)
        self._video_seconds = seconds if self._video_seconds is None else max(self._video_seconds, seconds)
        self._mux_copied(packet, self.video)
        self.frames_written += 1
        self._flush_pending(self._video_seconds)

    def _flush_pending(self, until: float | None) -> None:
        """Mux the copied packets that start before `until` (seconds; None: all of them)."""
        keep = []
        for item in self._pending:
            packet = item.packet
            if item.stream_index not in self.copied:
                continue
            if until is not None and packet.pts is not None and packet.pts * packet.time_base >= until:
                keep.append(item)
                continue
            self._mux_copied(packet, self.copied[item.stream_index])
        self._pending = keep

    def _mux_copied(self, packet: av.Packet, stream: av.stream.Stream) -> None:
        shift = self._ticks(packet.time_base)
        if stream.type == "subtitle" and packet.pts is not None and packet.pts < shift:
            # a subtitle already showing at --start: shown from the start for what is left of it
            packet.duration -= shift - packet.pts
            packet.pts = shift
            packet.dts = shift if packet.dts is not None else None
        if packet.pts is not None:
            packet.pts -= shift
        if packet.dts is not None:
            packet.dts -= shift
        packet.stream = stream
        self.container.mux(packet)
