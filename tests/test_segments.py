"""Segmented runs (rtsr.segments) against the one-process run of the same input.

Clips are made by the ffmpeg CLI (an encoder we do not drive): H.264 with 3 B-frames, a keyframe
a second, closed and open GOP (open: frames shown before a keyframe are decoded after it), AAC
(which starts at pts -1024), subtitles and chapters.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from rtsr.backends import BACKENDS
from rtsr.errors import RtsrError
from rtsr.models.weights import ModelCard, save_weights
from rtsr.segments import ProcessPool, SegmentPolicy, UpscalerSpec, upscale_segmented, work_folder
from rtsr.segments.join import join_segments
from rtsr.segments.plan import make_plan
from rtsr.segments.run import run_segment
from rtsr.upscaler import Upscaler
from rtsr.video.pipeline import VideoJob, upscale_video
from rtsr.video.writer import EncodeOptions
from tests.conftest import make_generator

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="ffmpeg/ffprobe not installed (.ci/run installs them)")
SUBS = "1\n00:00:00,500 --> 00:00:01,500\none\n\n2\n00:00:01,900 --> 00:00:03,200\ntwo\n\n"
CHAPTERS = (";FFMETADATA1\ntitle=clip\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1500\ntitle=a\n"
            "[CHAPTER]\nTIMEBASE=1/1000\nSTART=1500\nEND=4000\ntitle=b\n")
POLICY = SegmentPolicy(seconds=1.0)  # a segment per keyframe: 4 in a 4 s clip


def make_clip(folder: Path, name: str, open_gop: bool) -> Path:
    """4 s, 96 frames; 64x48 keeps a tiny model's runs short."""
    (folder / "subs.srt").write_text(SUBS)
    (folder / "chapters.txt").write_text(CHAPTERS)
    path = folder / name
    subs = "mov_text" if path.suffix == ".mp4" else "srt"
    subprocess.run(["ffmpeg", "-v", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24000/1001:duration=4",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4",
                    "-i", str(folder / "subs.srt"), "-f", "ffmetadata", "-i", str(folder / "chapters.txt"),
                    "-map", "0", "-map", "1", "-map", "2", "-map_metadata", "3", "-map_chapters", "3",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-bf", "3", "-g", "24",
                    "-keyint_min", "24", "-sc_threshold", "0", *(["-x264-params", "open-gop=1"] if open_gop else []),
                    "-c:a", "aac", "-c:s", subs, str(path)], check=True)
    return path


def make_media(folder: Path, clips: dict[str, bool]) -> dict:
    """Tiny weights, the clips (name: open GOP?) and each clip's one-process output (CRF 18, and
    lossless: the reference both outputs' PSNR is taken against)."""
    g = make_generator()
    weights = folder / "tiny-x4.pt"
    save_weights(weights, g, ModelCard(name="tiny-x4", config=g.config.to_dict()))
    upscaler = Upscaler(weights, device="cpu")
    media: dict = {"weights": weights, "spec": UpscalerSpec(str(weights), device="cpu"), "clips": {}, "single": {},
                   "lossless": {}}
    for name, open_gop in clips.items():
        clip = media["clips"][name] = make_clip(folder, name, open_gop)
        upscale_video(clip, media["single"].setdefault(name, folder / f"single-{name}"), upscaler, VideoJob())
        upscale_video(clip, media["lossless"].setdefault(name, folder / f"lossless-{name}"), upscaler,
                      VideoJob(EncodeOptions(crf=0)))
    return media


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_media(tmp_path_factory.mktemp("segments"), {"closed.mp4": False, "open.mkv": True})


def packets(path: Path) -> dict[str, list[tuple]]:
    """Per stream: (pts, dts, bytes) of every packet in file order (video: the packet's size)."""
    out: dict[str, list[tuple]] = {}
    with av.open(str(path)) as container:
        for p in container.demux():
            if p.size:
                payload = p.size if p.stream.type == "video" else bytes(p)
                out.setdefault(f"{p.stream.index}:{p.stream.type}", []).append((p.pts, p.dts, payload))
    return out


def frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="gray").astype(np.float64) for f in container.decode(video=0)]


def psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    mse = np.mean([np.mean((x - y) ** 2) for x, y in zip(a, b)])
    return float(10 * np.log10(255 ** 2 / mse))


def chapters_and_tags(path: Path) -> tuple:
    with av.open(str(path)) as container:
        return ([(c["start"], c["end"], c["metadata"]) for c in container.chapters()],
                {k: v for k, v in container.metadata.items() if k.lower() != "encoder"})


def assert_same_as_single(out: Path, single: Path, lossless: Path) -> None:
    got, want = packets(out), packets(single)
    assert got.keys() == want.keys()
    for stream, ours in got.items():
        if stream.endswith("video"):
            assert sorted(p for p, _, _ in ours) == sorted(p for p, _, _ in want[stream])
            dts = [d for _, d, _ in ours if d is not None]
            assert all(a < b for a, b in zip(dts, dts[1:])), "dts must increase"
        else:
            assert ours == want[stream], f"{stream} packets differ"
    assert chapters_and_tags(out) == chapters_and_tags(single)
    reference = frames(lossless)
    ours, theirs = frames(out), frames(single)
    assert len(ours) == len(theirs) == len(reference)
    assert abs(psnr(ours, reference) - psnr(theirs, reference)) < 0.5


def test_open_gop_segmented_run_matches_the_one_process_run(media: dict, tmp_path: Path) -> None:
    """(The closed-GOP MP4 is checked the same way after a resume and after a killed worker, below.)"""
    name = "open.mkv"
    clip, out = media["clips"][name], tmp_path / f"seg-{name}"
    stats = upscale_segmented(clip, out, media["spec"], ProcessPool(media["spec"], 2, threads=1), policy=POLICY)
    assert (stats.segments, sorted(stats.ran), stats.frames) == (4, [0, 1, 2, 3], 96)
    assert_same_as_single(out, media["single"][name], media["lossless"][name])
    assert not (tmp_path / ".rtsr-work").exists()  # the work folder goes once joined


def test_plan_cuts_at_keyframes_and_keeps_leading_frames_before_them(media: dict) -> None:
    clip = media["clips"]["open.mkv"]
    plan = make_plan(clip, "k", None, None, None, 1, POLICY)
    with av.open(str(clip)) as container:
        demuxed = [p for p in container.demux(video=0) if p.size]
    assert [s.start for s in plan.segments] == [p.pts for p in demuxed if p.is_keyframe]
    assert [s.frames for s in plan.segments] == [24] * 4 and plan.cut_at is None
    ranged = make_plan(clip, "k", 0.5, 2.5, 30, 1, POLICY)  # --start 0.5 --end 2.5 --max-frames 30
    shown = sorted(p.pts for p in demuxed if p.pts >= 500)  # Matroska: ms, from 0 here
    assert (ranged.frames, ranged.segments[0].start, ranged.cut_at) == (30, shown[0], shown[30])
    assert SegmentPolicy().target(3600, 2) == 30 and SegmentPolicy().target(100, 2) == 12.5
    assert SegmentPolicy().target(20, 2) == 10


def test_segments_and_join_in_this_process_with_av1(media: dict, tmp_path: Path) -> None:
    """The join copies whatever the encoder made (AV1 here: PyAV names its stream after the
    decoder, libdav1d), and run_segment works without an executor."""
    clip, out = media["clips"]["closed.mp4"], tmp_path / "out.mp4"
    av1 = EncodeOptions(codec="libsvtav1", crf=40, preset="12")
    work, key = work_folder(clip, out, media["spec"], VideoJob(av1))
    work.path.mkdir(parents=True)
    plan = make_plan(clip, key, None, None, None, 1, POLICY)
    upscaler = Upscaler(media["weights"], device="cpu")
    records = {s.index: run_segment(clip, work, plan, s.index, upscaler, av1) for s in plan.segments}
    for s in plan.segments:  # the video alone: the join copies audio and subtitles from the input, once
        with av.open(str(work.segment_path(s.index))) as segment:
            assert {st.type for st in segment.streams} & {"audio", "subtitle"} == set()
    assert join_segments(clip, out, work, plan, records, 4, av1, None, None) == 96
    got, source = packets(out), packets(clip)
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name in ("libdav1d", "av1")
    assert sorted(p for p, _, _ in got["0:video"]) == sorted(p for p, _, _ in source["0:video"])
    assert got["1:audio"] == source["1:audio"] and got["2:subtitle"] == source["2:subtitle"]


def test_the_joins_reader_of_a_video_only_input_reads_nothing(media: dict, tmp_path: Path) -> None:
    """The join copies the input's other streams; with none there is nothing to demux."""
    from rtsr.video.reader import END, VideoReader

    silent = tmp_path / "silent.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(media["clips"]["closed.mp4"]), "-map", "0:v", "-c", "copy",
                    str(silent)], check=True)
    reader = VideoReader(silent, 4, frames=False)
    reader.start_thread()
    try:
        assert reader.queue.get(timeout=10) is END and reader.error is None
    finally:
        reader.stop()


def test_work_folder_follows_the_output_changing_settings(media: dict, tmp_path: Path) -> None:
    clip, spec, dst = media["clips"]["closed.mp4"], media["spec"], tmp_path / "out.mp4"
    first, _ = work_folder(clip, dst, spec)
    assert work_folder(clip, dst, UpscalerSpec(spec.model, device="cpu", batch=3))[0].path == first.path
    assert work_folder(clip, dst, spec, VideoJob(EncodeOptions(crf=20)))[0].path != first.path
    assert work_folder(clip, dst, spec, VideoJob(end=2.0))[0].path != first.path
    assert work_folder(clip, dst, UpscalerSpec(spec.model, tile=32))[0].path != first.path


def test_failed_segment_leaves_a_resumable_work_folder(media: dict, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    clip, spec, out = media["clips"]["closed.mp4"], media["spec"], tmp_path / "out.mp4"
    work, _ = work_folder(clip, out, spec)
    work.segment_path(2).mkdir(parents=True)  # segment 2 cannot be written: a directory has its name
    pool = ProcessPool(spec, 2, threads=1)
    with pytest.raises(RtsrError, match=f"1 of 4 segments failed \\(segment 2: IsADirectoryError.*{work.path}"):
        upscale_segmented(clip, out, spec, pool, policy=POLICY)
    assert not out.exists()
    done = {i: work.segment_path(i).stat().st_mtime_ns for i in (0, 1, 3)}
    assert all(work.record_path(i).is_file() for i in done) and not work.record_path(2).exists()

    # a segment encoded unlike the others (here: by a x2 model) is refused by the join
    work.segment_path(2).rmdir()
    g2 = make_generator(scale=2)
    x2 = tmp_path / "x2.pt"
    save_weights(x2, g2, ModelCard(name="x2", config=g2.config.to_dict()))
    plan = work.load_plan()
    odd = run_segment(clip, work, plan, 2, Upscaler(x2, device="cpu"), EncodeOptions())
    records = {i: work.record(plan, i) for i in range(4)}
    with pytest.raises(RtsrError, match="segment 2 is encoded differently"):
        join_segments(clip, out, work, plan, records, 4, EncodeOptions(), None, None)
    assert not out.exists()

    # a record whose offset is not the plan's segment start (another plan's) is not trusted
    first = records[0]
    work.write_record(dataclasses.replace(first, offset=first.offset + 1))
    assert work.record(plan, 0) is None
    work.write_record(first)
    assert work.record(plan, 0) == first
    name, precision = first.backend.split()  # what computed it: auto's measured pick, e.g. "openvino fp32"
    assert name in BACKENDS and precision in ("fp32", "bf16", "fp16"), first.backend
    elsewhere = "tensorrt fp16"  # no CPU run computes this: as if the segment was done on a GPU node
    work.write_record(dataclasses.replace(first, backend=elsewhere))

    work.record_path(odd.index).unlink()  # no record: the rerun does it again, and only it
    with caplog.at_level(logging.WARNING, logger="rtsr.segments"):
        stats = upscale_segmented(clip, out, spec, pool, policy=POLICY)
    assert stats.ran == [2] and stats.frames == 96
    assert stats.backends == {first.backend, elsewhere}  # the mix is reported, not hidden
    assert f"different backends ({', '.join(sorted(stats.backends))})" in caplog.text
    assert_same_as_single(out, media["single"]["closed.mp4"], media["lossless"]["closed.mp4"])


def _spawned_workers(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the workers through Linux's /proc")
def test_sigterm_then_resume_with_a_sigkilled_worker_gives_the_same_output(media: dict, tmp_path: Path) -> None:
    """A run stopped by SIGTERM keeps its finished segments and takes its workers down with it; the
    rerun does the rest, and a worker SIGKILLed meanwhile costs only its segment."""
    clip, out = media["clips"]["closed.mp4"], tmp_path / "out.mp4"
    command = [sys.executable, "-m", "rtsr", "upscale", str(clip), "-o", str(out), "--model", str(media["weights"]),
               "--device", "cpu", "--workers", "2", "--segment-seconds", "1"]

    def started_until(ready) -> subprocess.Popen:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.02)
        return proc

    def records() -> int:
        return len(list(tmp_path.glob(".rtsr-work/*/seg-*.json")))

    proc = started_until(lambda: records() > 0)  # a segment is done: the workers are mid-run
    workers = _spawned_workers(proc.pid)
    assert workers, "no pool worker found"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and stderr.strip().endswith("rtsr: terminated"), stderr
    time.sleep(1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "workers outlived the run"
    done = records()
    assert not out.exists() and 1 <= done < 4

    # the rerun: a worker is killed while it writes a segment (its hidden temporary file appears)
    left_over = set(tmp_path.glob(".rtsr-work/*/.seg-*"))
    proc = started_until(lambda: bool(set(tmp_path.glob(".rtsr-work/*/.seg-*")) - left_over))
    workers = _spawned_workers(proc.pid)
    assert workers, "no pool worker found"
    os.kill(workers[0], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "a worker died" in stderr and f"{done} kept from an earlier run" in stdout, (stdout, stderr)
    assert_same_as_single(out, media["single"]["closed.mp4"], media["lossless"]["closed.mp4"])


def test_cli_errors_are_one_line_and_leave_no_output(media: dict, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from rtsr.cli import main

    raw = tmp_path / "raw.h264"  # an elementary stream: no timestamps to cut at
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(media["clips"]["closed.mp4"]), "-map", "0:v", "-c", "copy",
                    "-f", "h264", str(raw)], check=True)
    for src, args, fragment in ((media["clips"]["closed.mp4"], ["--workers", "0"], "--workers must be at least 1"),
                                (media["clips"]["closed.mp4"], ["--workers", "2", "--segment-seconds", "0"],
                                 "--segment-seconds must be more than 0"),
                                (raw, ["--workers", "2"], "carry no timestamps"),
                                (raw, ["--fresh", "--segment-seconds", "2"],
                                 "--fresh and --segment-seconds: only for segmented runs")):
        assert main(["upscale", str(src), "-o", str(tmp_path / "out.mkv"), "--model", str(media["weights"]),
                     "--device", "cpu", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rtsr: error: ") and err.count("\n") == 1 and fragment in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.h264"]


@pytest.mark.slow
def test_real_mpegts_range_matches_the_one_process_run(tmp_path: Path) -> None:
    """A packaged MPEG-TS nobody here made (H.264 388x300 15 fps and AAC, both from 1.4 s), over
    --end 1.5 (two segments), judged by ffprobe against the one-process run."""
    from tests import realmedia

    src = realmedia.require_media("test-segment.ts")
    g = make_generator(scale=2, blocks=1, channels=4)
    weights = tmp_path / "x2.pt"
    save_weights(weights, g, ModelCard(name="x2", config=g.config.to_dict()))
    job, spec = VideoJob(end=1.5), UpscalerSpec(str(weights), device="cpu")
    single, out = tmp_path / "single.ts", tmp_path / "seg.ts"
    upscale_video(src, single, Upscaler(weights, device="cpu"), job)
    stats = upscale_segmented(src, out, spec, ProcessPool(spec, 2, threads=1), job, policy=SegmentPolicy(seconds=0.5))
    assert stats.segments == 2
    ours, theirs = realmedia.probe(out), realmedia.probe(single)
    facts = [[(s["codec_type"], s["codec_name"], s.get("width"), s.get("nb_read_frames")) for s in p["streams"]]
             for p in (ours, theirs)]
    assert facts[0] == facts[1] and facts[0][0] == ("video", "h264", 776, str(stats.frames))
    assert realmedia.frame_times(out) == realmedia.frame_times(single)
    assert realmedia.frame_times(out, "a:0") == realmedia.frame_times(single, "a:0")
    got, want = packets(out), packets(single)
    assert got["1:audio"] == want["1:audio"]
