"""One segment: the one-process path (reader -> DeviceStage -> writer) over the segment's range.

The reader seeks to the keyframe, drops the frames before the segment's start and stops at the
first frame at or past its end; the writer shifts the frames so that the segment starts at time
0 (an MP4 starting later keeps that start in a millisecond edit list, which comes back a few
ticks off) and flushes its encoder. A segment counts as done only through its record, written
after the file and naming its frames, size and checksum: resume trusts records, never a file's
presence alone.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import av

from rtsr.errors import RtsrError
from rtsr.segments.plan import Plan, file_sha256, write_atomic
from rtsr.upscaler import Upscaler
from rtsr.video.pipeline import VideoJob, upscale_video
from rtsr.video.writer import EncodeOptions

try:
    import fcntl
except ImportError:  # not POSIX: no lock against a second run on the same work folder
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
# MP4 keeps the input's time base (a multiple of it) exactly; Matroska would round pts to ms
SEGMENT_SUFFIX = ".mp4"


@dataclass(frozen=True)
class Record:
    """What a finished segment holds; `offset`: the input pts of the segment's time 0."""

    index: int
    frames: int
    offset: int
    size: int
    sha256: str
    node: str = ""
    seconds: float = 0.0
    skipped_packets: int = 0
    repaired_frames: int = 0
    backend: str = ""  # what computed it ("openvino fp32"): a resume or a cluster may mix them


class WorkFolder:
    """plan.json, seg-NNNN.mp4 and their records seg-NNNN.json; on storage every worker sees."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def plan_path(self) -> Path:
        return self.path / "plan.json"

    def segment_path(self, index: int) -> Path:
        return self.path / f"seg-{index:04d}{SEGMENT_SUFFIX}"

    def record_path(self, index: int) -> Path:
        return self.path / f"seg-{index:04d}.json"

    def load_plan(self) -> Plan | None:
        try:
            return Plan.from_json(self.plan_path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable %s (%s): planning again", self.plan_path, exc)
            return None

    def save_plan(self, plan: Plan) -> None:
        write_atomic(self.plan_path, plan.to_json())

    def record(self, plan: Plan, index: int) -> Record | None:
        """The segment's record if it and its file agree (frames as planned, size, checksum)."""
        try:
            record = Record(**json.loads(self.record_path(index).read_text()))
            segment = plan.segments[index]
            if (record.index, record.frames, record.offset) != (index, segment.frames, segment.start):
                return None  # another plan's segment (the plan was made again): its frames would be mistimed
            path = self.segment_path(index)
            if path.stat().st_size != record.size or file_sha256(path) != record.sha256:
                log.warning("segment %d does not match its record: running it again", index)
                return None
            return record
        except (OSError, ValueError, TypeError):
            return None

    def write_record(self, record: Record) -> None:
        write_atomic(self.record_path(record.index), json.dumps(asdict(record)))

    def remove_stale(self) -> None:
        """Temporary files of runs that were killed (hidden names); called under the lock."""
        for path in self.path.glob(".*"):
            if path.is_file():
                log.info("removing %s, left by an interrupted run", path)
                path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One run at a time on a work folder: a second is refused, not mixed in."""
        self.path.mkdir(parents=True, exist_ok=True)
        with (self.path / "lock").open("w") as fh:
            if fcntl is not None:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise RtsrError(f"another rtsr run is using {self.path}") from None
            yield


def relative_seconds(plan: Plan, pts: int | None) -> float | None:
    """--start/--end seconds that the reader turns (origin + s) into exactly this pts's seconds,
    so it keeps a frame at the segment's start and stops at the one at its end."""
    if pts is None:
        return None
    target = plan.seconds(pts)
    s = target - plan.origin
    for _ in range(8):  # the sum rounds: step s by its last bit until it lands
        if plan.origin + s == target:
            break
        s = math.nextafter(s, math.inf if plan.origin + s < target else -math.inf)
    return s


def _video_pts(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return [p.pts for p in container.demux(container.streams.video[0]) if p.size]


def run_segment(src: Path, work: WorkFolder, plan: Plan, index: int, upscaler: Upscaler,
                encode: EncodeOptions, node: str = "") -> Record:
    """Upscale one segment into the work folder and write its record; RtsrError if it does not
    hold exactly the planned frames from time 0."""
    segment = plan.segments[index]
    started = time.perf_counter()
    job = VideoJob(encode, start=relative_seconds(plan, segment.start), end=relative_seconds(plan, segment.end),
                   video_only=True)
    path = work.segment_path(index)
    stats = upscale_video(src, path, upscaler, job)
    pts = _video_pts(path)
    if stats.frames != segment.frames or len(pts) != segment.frames or min(pts) != 0:
        raise RtsrError(f"segment {index} came out with {len(pts)} frames from pts {min(pts, default=None)}, "
                        f"not the planned {segment.frames} from 0 (the decoder dropped or invented frames "
                        f"after a seek); run this input without --workers/--ray")
    record = Record(index, segment.frames, segment.start, path.stat().st_size, file_sha256(path), node,
                    time.perf_counter() - started, stats.skipped_packets, stats.repaired_frames,
                    f"{upscaler.backend.name} {upscaler.precision}")
    work.write_record(record)
    log.info("segment %d: %d frames in %.1f s", index, record.frames, record.seconds)
    return record
