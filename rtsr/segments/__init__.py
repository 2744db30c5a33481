"""Segment-parallel upscaling with resume, above the one-process pipeline.

    plan (keyframes, no decode) -> executor (process pool | Ray): each segment runs the same
    reader -> DeviceStage -> writer path into the work folder -> join (stream copy, the input's
    other streams once) -> the output, renamed into place

The work folder (beside the output, or under `work_root`) is named after the input and every
output-changing setting; a rerun of the same command does only the segments without a valid
record, and a successful join removes it.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rtsr.errors import RtsrError
from rtsr.models.weights import load_weights, resolve_model
from rtsr.segments.executors import Executor, ProcessPool, RayExecutor, SegmentTask, UpscalerSpec
from rtsr.segments.join import join_segments
from rtsr.segments.plan import SegmentPolicy, file_sha256, make_plan, plan_key
from rtsr.segments.run import Record, WorkFolder
from rtsr.settings import load_settings
from rtsr.video.pipeline import VideoJob

__all__ = ["ProcessPool", "RayExecutor", "SegmentPolicy", "SegmentedStats", "UpscalerSpec", "model_scale",
           "upscale_segmented", "work_folder"]
log = logging.getLogger(__name__)
WORK_ROOT = ".rtsr-work"


@dataclass
class SegmentedStats:
    frames: int = 0
    seconds: float = 0.0
    segments: int = 0
    ran: list[int] = field(default_factory=list)  # segments run by this call (the rest: resumed)
    ran_frames: int = 0
    join_seconds: float = 0.0
    busy_seconds: float = 0.0  # this call's segments, added up over the workers that ran them
    nodes: set[str] = field(default_factory=set)  # where this call's segments ran
    backends: set[str] = field(default_factory=set)  # what computed every segment, resumed ones too
    skipped_packets: int = 0
    repaired_frames: int = 0
    work: Path | None = None

    @property
    def fps(self) -> float:
        """Of the frames this call upscaled (not those resumed)."""
        return self.ran_frames / self.seconds if self.seconds else 0.0


def model_scale(spec: UpscalerSpec) -> tuple[Path, int]:
    """The weights file and its scale, read (and so checked) before any worker starts."""
    path = resolve_model(spec.model or load_settings().model)
    generator, _ = load_weights(path)
    return path, generator.scale


def _settings(weights: Path, spec: UpscalerSpec, job: VideoJob, dst: Path) -> dict:
    """What changes the output: not the workers, the batch or the device index. `auto` stays as
    asked (a Ray node resolves it for itself); each segment's record says what computed it."""
    return {"model": file_sha256(weights), "backend": spec.backend, "precision": spec.precision, "tile": spec.tile,
            "encode": asdict(job.encode), "start": job.start, "end": job.end, "max_frames": job.max_frames,
            "container": dst.suffix.lower()}


def work_folder(src: Path, dst: Path, spec: UpscalerSpec, job: VideoJob = VideoJob(),
                work_root: Path | None = None, weights: Path | None = None) -> tuple[WorkFolder, str]:
    """The run's work folder and its key (the plan's)."""
    weights = weights or model_scale(spec)[0]
    key = plan_key(src, _settings(weights, spec, job, dst))[:16]
    return WorkFolder((work_root or dst.parent / WORK_ROOT) / f"{dst.name}.{key}"), key


def upscale_segmented(src: Path, dst: Path, spec: UpscalerSpec, executor: Executor, job: VideoJob = VideoJob(),
                      work_root: Path | None = None, fresh: bool = False, policy: SegmentPolicy = SegmentPolicy(),
                      progress: Callable[[int], None] | None = None) -> SegmentedStats:
    """Upscale `src` into `dst` segment by segment on `executor`, resuming an earlier run's work
    unless `fresh`; RtsrError (naming the work folder) when a segment fails, with no output."""
    started = time.perf_counter()
    weights, scale = model_scale(spec)
    work, key = work_folder(src, dst, spec, job, work_root, weights)
    plan = None if fresh else work.load_plan()
    planned = plan is None or plan.key != key
    if planned:  # reads the input only: one that cannot be cut leaves no work folder behind
        plan = make_plan(src, key, job.start, job.end, job.max_frames, executor.workers, policy)
    with work.lock():
        if fresh:
            for path in work.path.iterdir():
                if path.name != "lock":
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        work.remove_stale()
        if planned:
            work.save_plan(plan)
        records: dict[int, Record] = {s.index: r for s in plan.segments if (r := work.record(plan, s.index))}
        if records:
            log.warning("resuming: %d of %d segments were done by an earlier run (%s)", len(records),
                        len(plan.segments), work.path)
        if progress and records:
            progress(sum(r.frames for r in records.values()))
        stats = SegmentedStats(segments=len(plan.segments), work=work.path)

        def done(record: Record) -> None:
            records[record.index] = record
            stats.ran.append(record.index)
            stats.ran_frames += record.frames
            stats.nodes.add(record.node)
            stats.busy_seconds += record.seconds
            if progress:
                progress(record.frames)

        # absolute: a Ray actor on another node opens them from its own working folder
        tasks = [SegmentTask(str(src.resolve()), str(work.path.resolve()), plan, s.index, job.encode)
                 for s in plan.segments if s.index not in records]
        failures = executor.run(tasks, done) if tasks else {}
        if failures:
            first = min(failures)
            raise RtsrError(f"{len(failures)} of {len(plan.segments)} segments failed (segment {first}: "
                            f"{failures[first]}); the {len(records)} done are kept in {work.path}: run the same "
                            f"command again to do only the rest")
        joined = time.perf_counter()
        stats.frames = join_segments(src, dst, work, plan, records, scale, job.encode, job.start, job.end)
        stats.join_seconds = time.perf_counter() - joined
    stats.skipped_packets = sum(r.skipped_packets for r in records.values())
    stats.repaired_frames = sum(r.repaired_frames for r in records.values())
    stats.backends = {r.backend for r in records.values()}
    if len(stats.backends) > 1:  # e.g. a resume after a GPU appeared, or mixed nodes: seams within rounding
        log.warning("the segments were computed by different backends (%s): their pictures may differ by "
                    "rounding across a cut; --fresh runs them all on one", ", ".join(sorted(stats.backends)))
    shutil.rmtree(work.path, ignore_errors=True)
    if work_root is None:
        with contextlib.suppress(OSError):
            work.path.parent.rmdir()  # the default root, once no other run's folder is in it
    stats.seconds = time.perf_counter() - started
    return stats
