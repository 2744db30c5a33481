"""Does a segmented run scale? Frames/s of one process with one thread against a local pool of 1
and 2 workers of one thread each, on the same clip, with the join's cost printed.

    python benchmarks/scaling.py                       # srgan-x4-lite, 128x72, 4 s, 2 rounds
    python benchmarks/scaling.py --size 160x90 --seconds 12 --note "idle machine"

Every figure is wall time from nothing loaded to the output renamed into place: the one process
loads its model, a pool spawns its workers and each loads its own, then the join. The modes run
round-robin, so a shared machine's load falls on them alike; the best round of each is kept.
A 2-worker speedup needs two cores that nothing else uses: the JSON records the load average.
On GPUs a pool or Ray runs one worker per GPU, and the same ratios are expected per GPU added
(each GPU fed by its own process), less the join and one model load per worker.

Writes a JSON record under benchmarks/results/ unless --json says where.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fps import environment  # noqa: E402
from rtsr import Upscaler  # noqa: E402
from rtsr.segments import ProcessPool, SegmentPolicy, UpscalerSpec, upscale_segmented  # noqa: E402
from rtsr.video.pipeline import VideoJob, upscale_video  # noqa: E402


def make_clip(folder: Path, size: str, seconds: float) -> Path:
    """H.264 (3 B-frames, a keyframe a second) + AAC by the ffmpeg CLI: a segment per second."""
    path = folder / f"scaling_{size}.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=24:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-bf", "3", "-g", "24",
                    "-keyint_min", "24", "-sc_threshold", "0", "-c:a", "aac", str(path)], check=True)
    return path


def one_process(clip: Path, out: Path, model: str) -> dict:
    start = time.perf_counter()
    stats = upscale_video(clip, out, Upscaler(model, device="cpu"), VideoJob())
    wall = time.perf_counter() - start
    return {"frames": stats.frames, "wall_s": wall, "fps": stats.frames / wall, "join_s": 0.0}


def pool(clip: Path, out: Path, model: str, workers: int, segment_seconds: float) -> dict:
    spec = UpscalerSpec(model, device="cpu")
    start = time.perf_counter()
    stats = upscale_segmented(clip, out, spec, ProcessPool(spec, workers, threads=1),
                              policy=SegmentPolicy(seconds=segment_seconds))
    wall = time.perf_counter() - start
    return {"frames": stats.frames, "wall_s": wall, "fps": stats.frames / wall, "join_s": stats.join_seconds,
            "segments": stats.segments, "worker_busy_s": stats.busy_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="srgan-x4-lite")
    parser.add_argument("--size", default="128x72", help="input WxH")
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length (24 fps, a keyframe a second)")
    parser.add_argument("--segment-seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--note", default="")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the one-process mode: one thread, like each worker
    modes = {"one process, 1 thread": lambda c, o: one_process(c, o, args.model),
             "pool, 1 worker x 1 thread": lambda c, o: pool(c, o, args.model, 1, args.segment_seconds),
             "pool, 2 workers x 1 thread": lambda c, o: pool(c, o, args.model, 2, args.segment_seconds)}
    env = environment()
    runs: dict[str, list[dict]] = {name: [] for name in modes}
    with tempfile.TemporaryDirectory() as folder:
        clip = make_clip(Path(folder), args.size, args.seconds)
        for round_ in range(args.rounds):
            for name, run in modes.items():
                out = Path(folder) / f"out-{round_}-{len(runs[name])}-{name[:4]}.mp4"
                runs[name].append({**run(clip, out), "loadavg_1min_after": round(os.getloadavg()[0], 2)})
                out.unlink()
                print(f"round {round_ + 1} {name:<28} {runs[name][-1]['fps']:.3f} fps "
                      f"(join {runs[name][-1]['join_s']:.2f} s)", flush=True)
    best = {name: max(r, key=lambda x: x["fps"]) for name, r in runs.items()}
    base = best["one process, 1 thread"]["fps"]
    print(f"\n{'mode':<28} {'fps':>7} {'vs one process':>14} {'wall s':>7} {'join s':>6} {'segments busy s':>15}")
    for name, row in best.items():
        print(f"{name:<28} {row['fps']:>7.3f} {row['fps'] / base:>13.2f}x {row['wall_s']:>7.1f} "
              f"{row['join_s']:>6.2f} {row.get('worker_busy_s', 0):>15.1f}")
    record = {"environment": {**env, "loadavg_1min_at_end": f"{os.getloadavg()[0]:.2f}"},
              "clip": {"size": args.size, "seconds": args.seconds, "fps": 24, "keyframe_every_s": 1,
                       "made_by": "ffmpeg testsrc2 + sine, libx264 -bf 3 -g 24, AAC"},
              "model": args.model, "segment_seconds": args.segment_seconds, "note": args.note,
              "runs": runs, "best": best,
              "speedup_vs_one_process": {name: row["fps"] / base for name, row in best.items()}}
    stamp = dt.date.today().isoformat()
    path = args.json or ROOT / "benchmarks" / "results" / f"cpu-{env['cpu']}-{env['cores']}core-{stamp}-scaling.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
