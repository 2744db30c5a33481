"""Where a segmented run cuts the input: at keyframes, read from the demuxed packets (no decode).

A segment is the frames from one keyframe up to the next segment's keyframe, in display order;
the open-GOP frames shown before a keyframe but decoded after it stay with the segment before.
The plan lives in a work folder named after a key: a hash of the input (its size and a sample of
its bytes) and of every setting that changes the output, so a rerun of the same command finds it
and a changed one does not.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from rtsr import __version__
from rtsr.errors import RtsrError
from rtsr.video.reader import VideoReader

log = logging.getLogger(__name__)
PLAN_VERSION = 1
SAMPLE_BYTES = 1 << 20   # the input's key hashes 16 pieces of this size, spread over the file
SAMPLES = 16


@dataclass(frozen=True)
class SegmentPolicy:
    """About `seconds` per segment; by default at least `per_worker` segments for each worker (so
    a slow or lost one costs little), each `shortest`-`longest` seconds (so starts are rare)."""

    seconds: float | None = None
    shortest: float = 10.0
    longest: float = 30.0
    per_worker: int = 4

    def target(self, duration: float, workers: int) -> float:
        if self.seconds is not None:
            return self.seconds
        return min(self.longest, max(self.shortest, duration / (self.per_worker * max(1, workers))))


@dataclass(frozen=True)
class Segment:
    """Frames with pts in [start, end) of the input's video (end None: to the range's end)."""

    index: int
    start: int
    end: int | None
    frames: int


@dataclass(frozen=True)
class Plan:
    key: str
    time_base: Fraction     # of the input's video stream: the unit of every pts here
    origin: float           # the input's first timestamp (seconds): --start/--end count from it
    segments: tuple[Segment, ...]
    cut_at: int | None      # pts of the first frame past the range, where the copied streams stop

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.segments)

    def seconds(self, pts: int) -> float:
        """A pts as the reader compares it: seconds on the input's clock."""
        return float(pts * self.time_base)

    def to_json(self) -> str:
        data = {**asdict(self), "time_base": str(self.time_base), "version": PLAN_VERSION}
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        if data.get("version") != PLAN_VERSION:
            raise ValueError(f"plan version {data.get('version')}")
        return cls(key=data["key"], time_base=Fraction(data["time_base"]), origin=data["origin"],
                   segments=tuple(Segment(**s) for s in data["segments"]), cut_at=data["cut_at"])


def input_fingerprint(path: Path) -> str:
    """A hash of the file's size and of 16 MiB sampled across it: a changed input gets a new work
    folder without reading a film whole."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        for i in range(SAMPLES):
            fh.seek(max(0, size - SAMPLE_BYTES) * i // (SAMPLES - 1))
            digest.update(fh.read(SAMPLE_BYTES))
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plan_key(src: Path, settings: dict) -> str:
    """The work folder's key: the input and every output-changing setting (JSON-able values)."""
    text = json.dumps({"input": input_fingerprint(src), "rtsr": __version__, **settings}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _scan(reader: VideoReader) -> tuple[list[int], list[int]]:
    """Every frame's pts in display order and the keyframes' pts, from the video packets."""
    pts, keys = [], []
    for packet in reader.container.demux(reader.stream):
        if not packet.size:  # the demuxer's final flush packet
            continue
        if packet.pts is None:
            raise RtsrError(f"{reader.path}: its video packets carry no timestamps (a raw stream or an old "
                            f"AVI), so it cannot be cut into segments; run it without --workers/--ray")
        pts.append(packet.pts)
        if packet.is_keyframe:
            keys.append(packet.pts)
    pts.sort()
    if len(set(pts)) != len(pts):
        raise RtsrError(f"{reader.path}: frames share timestamps, so it cannot be cut into segments; "
                        f"run it without --workers/--ray")
    return pts, sorted(keys)


def make_plan(src: Path, key: str, start: float | None, end: float | None, max_frames: int | None,
              workers: int, policy: SegmentPolicy = SegmentPolicy()) -> Plan:
    """Segments of the frames a one-process run over the same range would upscale."""
    reader = VideoReader(src, 1, start, end, max_frames)  # the range as the one-process run reads it
    try:
        pts, keys = _scan(reader)
        time_base, origin = reader.stream.time_base, reader.info.origin
    finally:
        reader.container.close()
    kept = [p for p in pts if (reader.start is None or float(p * time_base) >= reader.start)
            and (reader.end is None or float(p * time_base) < reader.end)][:max_frames]
    if not kept:
        raise RtsrError(f"{src}: no video frames" + (" in the range asked for" if start or end else ""))
    after = bisect.bisect_right(pts, kept[-1])
    cut_at = pts[after] if after < len(pts) else None
    duration = float((kept[-1] - kept[0]) * time_base)
    target = policy.target(duration, workers)
    bounds = [kept[0]]
    for k in keys:
        if k > kept[0] and k <= kept[-1] and float((k - bounds[-1]) * time_base) >= target:
            bounds.append(k)
    if len(bounds) > 1 and float((kept[-1] - bounds[-1]) * time_base) < target / 2:
        bounds.pop()  # a short tail joins the segment before it
    ends = bounds[1:] + [cut_at]
    segments = tuple(Segment(i, s, e, (len(kept) if e is None else bisect.bisect_left(kept, e))
                             - bisect.bisect_left(kept, s)) for i, (s, e) in enumerate(zip(bounds, ends)))
    log.info("%s: %d frames in %d segments of about %.1f s", src, len(kept), len(segments), target)
    return Plan(key, time_base, origin, segments, cut_at)


def write_atomic(path: Path, text: str) -> None:
    """Write a small file so that a reader sees the old one or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
