"""The join: the segments' video packets, stream-copied in order with their offsets restored,
muxed by the one-process writer beside the input's audio, subtitles, chapters and metadata
(copied from the input once, not per segment). Written atomically: a refused or failed join
leaves no output.
"""
from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from rtsr.errors import RtsrError
from rtsr.paths import atomic_output
from rtsr.segments.plan import Plan
from rtsr.segments.run import Record, WorkFolder
from rtsr.video.reader import END, PacketItem, VideoReader
from rtsr.video.writer import EncodeOptions, VideoWriter

log = logging.getLogger(__name__)
QUEUE = 64


def _params(stream: av.stream.Stream) -> tuple:
    ctx = stream.codec_context
    return ctx.name, ctx.width, ctx.height, ctx.format.name if ctx.format else None, bytes(ctx.extradata or b"")


def _check_segments(work: WorkFolder, plan: Plan, records: dict[int, Record]) -> None:
    """Refuse a join with a segment missing or encoded differently from the first."""
    missing = [s.index for s in plan.segments if s.index not in records]
    if missing:
        raise RtsrError(f"cannot join: segment(s) {', '.join(map(str, missing))} of {len(plan.segments)} "
                        f"not done (in {work.path})")
    first = None
    for segment in plan.segments:
        with av.open(str(work.segment_path(segment.index))) as container:
            params = _params(container.streams.video[0])
        if first is None:
            first = params
        elif params != first:
            raise RtsrError(f"cannot join: segment {segment.index} is encoded differently from segment 0 "
                            f"({params[:4]} vs {first[:4]}, or its codec header); rerun with --fresh")


def _video_packets(work: WorkFolder, plan: Plan, records: dict[int, Record],
                   video_index: int) -> Iterator[tuple[float, PacketItem]]:
    """Each segment's packets in decode order, moved back to the input's clock."""
    for segment in plan.segments:
        with av.open(str(work.segment_path(segment.index))) as container:
            stream = container.streams.video[0]
            offset = Fraction(records[segment.index].offset) * plan.time_base / stream.time_base
            if offset.denominator != 1:
                raise RtsrError(f"cannot join: segment {segment.index}'s time base {stream.time_base} cannot "
                                f"hold the input's {plan.time_base} exactly")
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                packet.pts += int(offset)
                packet.dts = packet.dts + int(offset) if packet.dts is not None else None
                yield float((packet.dts if packet.dts is not None else packet.pts) * stream.time_base), \
                    PacketItem(packet, video_index)


def _copied_packets(reader: VideoReader) -> Iterator[tuple[float, PacketItem]]:
    while (item := reader.queue.get()) is not END:
        packet = item.packet
        yield (float(packet.pts * packet.time_base) if packet.pts is not None else float("-inf")), item
    if reader.error is not None:
        raise reader.error


def join_segments(src: Path, dst: Path, work: WorkFolder, plan: Plan, records: dict[int, Record], scale: int,
                  encode: EncodeOptions, start: float | None, end: float | None) -> int:
    """Write `dst` from the segments and the input's other streams; returns the frames written."""
    _check_segments(work, plan, records)
    reader = VideoReader(src, QUEUE, start, end, frames=False)
    try:
        with atomic_output(dst) as tmp, av.open(str(work.segment_path(0))) as first:
            writer = VideoWriter(tmp, reader.info, reader.container, scale, encode, QUEUE, reader.start or 0.0,
                                 reader.end, video_template=first.streams.video[0])
            reader.start_thread()
            try:
                merged = heapq.merge(_video_packets(work, plan, records, reader.info.video_index),
                                     _copied_packets(reader), key=lambda timed: timed[0])
                for _, item in merged:
                    writer.put(item)
                writer.finish(plan.seconds(plan.cut_at) if plan.cut_at is not None else None)
            except BaseException:
                writer.abort()
                raise
            if writer.frames_written != plan.frames:  # before the rename: no output
                raise RtsrError(f"the join wrote {writer.frames_written} frames, not the planned {plan.frames}")
    finally:
        reader.stop()
    return writer.frames_written
