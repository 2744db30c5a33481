"""The frame path of `rtsr upscale video.mp4`: reader -> device stage -> writer.

    reader thread  --(bounded queue)-->  device stage (this thread)  --(bounded queue)-->  writer thread
    demux + decode                       upload, yuv->rgb, model,                          encode + mux
    copied packets ---------------------------------------------------------------------> stream copy

On CUDA the device stage overlaps its three parts on three streams (upload, compute,
download) ordered by events, through pinned host buffers allocated once per shape and recycled
by the writer; on the CPU the same stages run in order.
"""
from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rtsr.errors import RtsrError
from rtsr.paths import atomic_output, default_output
from rtsr.upscaler import Upscaler
from rtsr.video.color import rgb_to_yuv420, yuv_to_rgb
from rtsr.video.reader import END, PacketItem, VideoInfo, VideoItem, VideoReader
from rtsr.video.writer import EncodeOptions, FrameBatch, VideoWriter, container_suffix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoJob:
    encode: EncodeOptions = EncodeOptions()
    batch: int | None = None
    start: float | None = None
    end: float | None = None
    max_frames: int | None = None
    video_only: bool = False  # a segment's file: the join copies the input's other streams once


@dataclass
class VideoStats:
    frames: int = 0
    seconds: float = 0.0
    skipped_packets: int = 0
    repaired_frames: int = 0     # kept, but retimed: their own timestamps went backwards
    frames_end: float | None = None  # where the last frame ends (seconds, the input's clock)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


class DeviceStage:
    """Upload -> yuv->rgb -> upscale -> rgb->yuv -> download, for one batch of frames.

    Host buffers are pinned on CUDA and recycled through `free` slots: the writer releases a
    slot once it has encoded the frames in it, which also bounds the frames in flight.
    """

    SLOTS = 3

    def __init__(self, upscaler: Upscaler, info: VideoInfo, batch: int) -> None:
        self.upscaler, self.info, self.batch = upscaler, info, batch
        self.device = upscaler.device
        self.cuda = self.device.type == "cuda"
        (h, w), s = info.padded_hw, upscaler.scale
        self.out_hw = info.height * s, info.width * s  # an odd input's padding is cropped off
        if self.out_hw[0] % 2 or self.out_hw[1] % 2:
            raise RtsrError(f"a x{s} upscale of {info.width}x{info.height} is {self.out_hw[1]}x{self.out_hw[0]}, "
                            f"which 4:2:0 video cannot hold (width and height must be even)")
        self.chroma_hw = (h, w) if info.color.full_chroma else (h // 2, w // 2)  # what the reader delivers
        self.in_size = h * w + 2 * self.chroma_hw[0] * self.chroma_hw[1]
        self.out_size = self.out_hw[0] * self.out_hw[1] * 3 // 2
        pin = self.cuda
        dtype = torch.uint8 if info.color.bit_depth == 8 else torch.int16  # 10-bit codes fit in int16
        self.in_host = [torch.empty((batch, self.in_size), dtype=dtype, pin_memory=pin) for _ in range(self.SLOTS)]
        self.out_host = [torch.empty((batch, self.out_size), dtype=dtype, pin_memory=pin) for _ in range(self.SLOTS)]
        self.free: queue.Queue[int] = queue.Queue()
        for slot in range(self.SLOTS):
            self.free.put(slot)
        if self.cuda:
            self.upload_stream = torch.cuda.Stream(self.device)
            self.compute_stream = torch.cuda.Stream(self.device)
            self.download_stream = torch.cuda.Stream(self.device)
        self.seconds = {"upload": 0.0, "model": 0.0, "colour": 0.0, "download": 0.0}
        # on CUDA the host clock sees only the enqueue: each stage is timed by events on its stream,
        # (stage, start, end), read once at the end (stage_seconds)
        self._events: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    def _mark(self, stream: "torch.cuda.Stream") -> "torch.cuda.Event":
        event = torch.cuda.Event(enable_timing=True)
        event.record(stream)
        return event

    def stage_seconds(self) -> dict[str, float]:
        """Seconds spent in each stage: the device's own time on CUDA, host time on the CPU."""
        if not self._events:
            return dict(self.seconds)
        self._events[-1][2].synchronize()
        seconds = dict.fromkeys(self.seconds, 0.0)
        for stage, start, end in self._events:
            seconds[stage] += start.elapsed_time(end) / 1000
        return seconds

    def _planes(self, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        (h, w), (ch, cw) = self.info.padded_hw, self.chroma_hw
        n = packed.shape[0]
        y, u, v = packed.split((h * w, ch * cw, ch * cw), dim=1)
        return y.view(n, h, w), u.view(n, ch, cw), v.view(n, ch, cw)

    def _convert_and_upscale(self, packed: torch.Tensor) -> torch.Tensor:
        marks = [self._mark(self.compute_stream)] if self.cuda else []
        t0 = time.perf_counter()
        rgb = yuv_to_rgb(*self._planes(packed), self.info.color)
        t1 = time.perf_counter()
        marks += [self._mark(self.compute_stream)] if self.cuda else []
        sr = self.upscaler.upscale_tensor(rgb, self.compute_stream if self.cuda else None)
        sr = sr[..., : self.out_hw[0], : self.out_hw[1]]
        t2 = time.perf_counter()
        marks += [self._mark(self.compute_stream)] if self.cuda else []
        out = torch.cat([p.flatten(1) for p in rgb_to_yuv420(sr, self.info.color)], 1)
        self.seconds["colour"] += (t1 - t0) + (time.perf_counter() - t2)
        self.seconds["model"] += t2 - t1
        if self.cuda:
            marks.append(self._mark(self.compute_stream))
            self._events += [("colour", marks[0], marks[1]), ("model", marks[1], marks[2]),
                             ("colour", marks[2], marks[3])]
        return out

    @torch.inference_mode()
    def submit(self, items: list[VideoItem]) -> FrameBatch:
        slot = self.free.get()
        n = len(items)
        t0 = time.perf_counter()
        host_in = self.in_host[slot][:n]
        for row, item in zip(host_in, items):
            row.numpy()[:] = item.yuv.reshape(-1)
        batch = FrameBatch(packed=self.out_host[slot][:n], pts=[i.pts for i in items], time_base=items[0].time_base,
                           rotation=items[0].rotation, release=lambda: self.free.put(slot))
        if not self.cuda:
            self.seconds["upload"] += time.perf_counter() - t0
            out = self._convert_and_upscale(host_in)
            t1 = time.perf_counter()
            batch.packed.copy_(out)
            self.seconds["download"] += time.perf_counter() - t1
            return batch
        with torch.cuda.stream(self.upload_stream):
            upload_start = self._mark(self.upload_stream)
            dev_in = host_in.to(self.device, non_blocking=True)
            uploaded = self._mark(self.upload_stream)
        self._events.append(("upload", upload_start, uploaded))
        self.seconds["upload"] += time.perf_counter() - t0
        self.compute_stream.wait_event(uploaded)
        dev_in.record_stream(self.compute_stream)
        with torch.cuda.stream(self.compute_stream):
            out = self._convert_and_upscale(dev_in)
            computed = torch.cuda.Event()
            computed.record()
        self.download_stream.wait_event(computed)
        out.record_stream(self.download_stream)
        with torch.cuda.stream(self.download_stream):
            download_start = self._mark(self.download_stream)
            batch.packed.copy_(out, non_blocking=True)
            batch.ready = self._mark(self.download_stream)
        self._events.append(("download", download_start, batch.ready))
        return batch


def _frames_and_packets(reader: VideoReader, writer: VideoWriter, batch: int):
    """Batches of VideoItems from the reader; packets go straight on to the writer."""
    pending: list[VideoItem] = []
    while True:
        item = reader.queue.get()
        if item is END:
            break
        if isinstance(item, PacketItem):
            writer.put(item)
            continue
        pending.append(item)
        if len(pending) == batch:
            yield pending
            pending = []
    if reader.error is not None:
        raise reader.error
    if pending:
        yield pending


def upscale_video(src: Path, dst: Path, upscaler: Upscaler, job: VideoJob = VideoJob(),
                  progress=None) -> VideoStats:
    """Upscale every frame of `src` into `dst` (written atomically); `progress(n)` per batch."""
    stats = VideoStats()
    start = time.perf_counter()
    reader = VideoReader(src, upscaler.settings.queue_frames, job.start, job.end, job.max_frames,
                         other_streams=not job.video_only)
    try:
        batch = job.batch or upscaler.batch
        with atomic_output(dst) as tmp:
            writer = VideoWriter(tmp, reader.info, reader.container, upscaler.scale, job.encode,
                                 upscaler.settings.queue_frames, reader.start or 0.0, reader.end)
            stage = DeviceStage(upscaler, reader.info, batch)
            reader.start_thread()
            try:
                for items in _frames_and_packets(reader, writer, batch):
                    writer.put(stage.submit(items))
                    stats.frames += len(items)
                    if progress:
                        progress(len(items))
                if stats.frames == 0:
                    raise RtsrError(f"{src}: no video frames decoded" + (" in the range asked for" if job.start or job.end else ""))
                writer.finish(reader.cut_at)
            except BaseException:
                writer.abort()
                raise
    finally:
        reader.stop()
    stats.seconds = time.perf_counter() - start
    stats.skipped_packets, stats.repaired_frames = reader.skipped_packets, reader.repaired_frames
    stats.frames_end = reader.frames_end
    stats.stage_seconds = {**stage.stage_seconds(), "encode+mux": writer.busy_seconds - writer.wait_seconds}
    return stats


def default_video_output(src: Path, scale: int, codec: str) -> Path:
    """NAME_x4 in the input's container where it holds the encode, else NAME_x4.mkv (see container_suffix)."""
    return default_output(src, scale, container_suffix(src, codec))

