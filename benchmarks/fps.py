"""How fast is rtsr here? Model-only throughput/latency per backend, size and batch; the whole
`rtsr upscale` pipeline with its time split by stage; and the baselines a user would otherwise
use (OpenCV resize, a naive decode->model->encode loop), all in one run.

    python benchmarks/fps.py --quick            # under two minutes on a 2-core CPU
    python benchmarks/fps.py --json out.json --plot fps.png
    python benchmarks/fps.py --model-only --sizes 320x180 --batches 1 --precisions fp32 bf16
    python benchmarks/fps.py --sizes 320x180 --batches 1 --frames 12 --note "shared: ..."

Every model row says its backend and precision (fp32, bf16: CPU, fp16: CUDA or Vulkan storage);
all backends and precisions of one model, size and batch are timed round-robin, call by call, so
a shared machine's load falls on them alike and their ratios hold. A software Vulkan device
(lavapipe) is left out unless --backends names vulkan: its speed says nothing of a GPU's.

Prints a table and writes a JSON record (device, versions, git revision) under
benchmarks/results/ unless --json says where.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtsr import Upscaler, devices  # noqa: E402
from rtsr.backends import BACKENDS, precision_reason, unavailable_reason  # noqa: E402
from rtsr.devices import PRECISIONS  # noqa: E402
from rtsr.errors import RtsrError  # noqa: E402
from rtsr.info import package_version  # noqa: E402
from rtsr.models.weights import load_weights, resolve_model, shipped_models  # noqa: E402
from rtsr.video.pipeline import VideoJob, upscale_video  # noqa: E402
from rtsr.video.synth import pan_frames, write_clip  # noqa: E402

PHOTO = ROOT / "samples" / "photo.png"
DEFAULT_SIZES = ("320x180", "480x270", "640x360", "960x540", "1280x720")
MODEL_CALLS_PER_ROUND = 2  # model-only calls beside each end-to-end round


@dataclass
class Row:
    kind: str          # "model", "baseline", "end-to-end"
    name: str          # backend / method
    model: str
    size: str          # input WxH
    batch: int
    fps: float
    ms_per_frame: float
    p50_ms: float | None = None      # per call (a batch); None where calls are not timed one by one
    p95_ms: float | None = None
    spread_pct: float | None = None  # (p95 - p50) / p50
    peak_mem_mib: float | None = None
    note: str = ""
    precision: str = ""  # what the network computed in: fp32, bf16, fp16 ("" for the OpenCV baselines)


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def frames_of(size: tuple[int, int], count: int) -> list[np.ndarray]:
    """`count` RGB frames of `size`, panned across the sample photo (scaled up if needed)."""
    photo = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    w, h = size
    factor = max(1.25 * w / photo.shape[1], 1.25 * h / photo.shape[0], 1.0)
    if factor > 1:
        photo = cv2.resize(photo, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    return pan_frames(photo, size, count)


def time_call(fn, cuda: bool) -> float:
    """Seconds one call takes; CUDA calls are timed with events, not host clocks."""
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timed_round_robin(fns: list, repeats: int, warmup: int, cuda: bool) -> list[list[float]]:
    """Seconds per call of each of `fns`, called in turn, so that load which comes and goes on a
    shared machine falls on all of them alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, own in zip(fns, times):
            own.append(time_call(fn, cuda))
    return times


def timed_calls(fn, repeats: int, warmup: int, cuda: bool) -> list[float]:
    """Seconds per call of `fn`."""
    return timed_round_robin([fn], repeats, warmup, cuda)[0]


def row_from_times(kind: str, name: str, model: str, size: str, batch: int, times: list[float],
                   peak: float | None = None, note: str = "") -> Row:
    p50 = statistics.median(times)
    p95 = float(np.percentile(times, 95))
    return Row(kind, name, model, size, batch, batch / p50, 1000 * p50 / batch, 1000 * p50, 1000 * p95,
               100 * (p95 - p50) / p50, peak, note)


def bench_model(model: str, runs: list[tuple[str, str]], device: torch.device, size: tuple[int, int], batch: int,
                repeats: int, warmup: int) -> list[Row]:
    """One row per (backend, precision) in `runs`, all timed round-robin (peak memory, on CUDA, is
    over all of them); a pair this machine cannot run becomes a row with its reason and fps 0."""
    ups, rows = [], []
    for backend, precision in runs:
        try:
            ups.append(Upscaler(model, backend=backend, device=device, tile=max(size) + 1, batch=batch,
                                precision=precision))
        except RtsrError as exc:
            rows.append(Row("model", f"{backend}-{device.type}-{precision}", model, f"{size[0]}x{size[1]}", batch, 0, 0,
                            note=f"not run: {exc}", precision=precision))
    xs = [torch.rand(batch, 3, size[1], size[0], device=device, dtype=up.backend.dtype) for up in ups]
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = timed_round_robin([lambda up=up, x=x: up.upscale_tensor(x) for up, x in zip(ups, xs)], repeats, warmup, cuda)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    for up, own in zip(ups, times):
        row = row_from_times("model", f"{up.backend.name}-{device.type}-{up.precision}", model,
                             f"{size[0]}x{size[1]}", batch, own, peak)
        row.precision = up.precision
        rows.append(row)
    return rows


def default_precisions(device: torch.device) -> list[str]:
    """fp32 and what auto runs: fp16 on CUDA, bf16 on a CPU with native bf16."""
    if device.type == "cuda":
        return ["fp16", "fp32"]
    return ["fp32", "bf16"] if devices.native_bf16()[0] else ["fp32"]


def bench_resize(size: tuple[int, int], scale: int, repeats: int) -> list[Row]:
    frame = frames_of(size, 1)[0]
    rows = []
    for name, interp in (("opencv-bicubic", cv2.INTER_CUBIC), ("opencv-lanczos", cv2.INTER_LANCZOS4)):
        out = (size[0] * scale, size[1] * scale)
        times = timed_calls(lambda: cv2.resize(frame, out, interpolation=interp), repeats, 2, False)
        rows.append(row_from_times("baseline", name, "-", f"{size[0]}x{size[1]}", 1, times))
    return rows


def make_clip(size: tuple[int, int], count: int, folder: Path) -> Path:
    path = folder / f"bench_{size[0]}x{size[1]}.mp4"
    write_clip(path, frames_of(size, count), fps=24, audio=True, crf=18)
    return path


def naive_loop(clip: Path, model: str, out: Path) -> tuple[int, float]:
    """What a user would write first: one frame at a time, rgb24 on the CPU, eager fp32 model
    (BatchNorm not folded), PyAV encode; returns (frames, seconds)."""
    generator, _ = load_weights(resolve_model(model))
    start = time.perf_counter()
    frames = 0
    with av.open(str(clip)) as src, av.open(str(out), "w") as dst:
        stream = dst.add_stream("libx264", rate=24, options={"crf": "18", "preset": "veryfast"})
        first = True
        for frame in src.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            with torch.no_grad():
                x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
                y = (generator(x).clamp(0, 1)[0].permute(1, 2, 0) * 255).round().byte().numpy()
            if first:
                stream.width, stream.height, stream.pix_fmt = y.shape[1], y.shape[0], "yuv420p"
                first = False
            for packet in stream.encode(av.VideoFrame.from_ndarray(y, format="rgb24")):
                dst.mux(packet)
            frames += 1
        for packet in stream.encode(None):
            dst.mux(packet)
    return frames, time.perf_counter() - start


def bench_end_to_end(model: str, backends: list[str], device: torch.device, size: tuple[int, int], count: int,
                     rounds: int, folder: Path) -> tuple[list[Row], dict[str, dict[str, float]]]:
    """Each backend (at the precision auto runs) through the whole `rtsr upscale` pipeline, the naive
    loop, and each backend's model alone on a frame of the clip's size, in `rounds` turns over a
    `count`-frame clip: the load of a shared machine falls on all of them alike, so end-to-end /
    model-only and end-to-end / naive loop compare the same minutes (measured apart, minutes apart,
    they once gave an end to end 1.5x faster than its model alone)."""
    clip = make_clip(size, count, folder)
    label = f"{size[0]}x{size[1]}"
    frame = frames_of(size, 1)[0]
    ups = {b: Upscaler(model, backend=b, device=device) for b in backends}
    xs = {b: (torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255).to(device, up.backend.dtype)
          .repeat(up.batch, 1, 1, 1) for b, up in ups.items()}  # a batch as the pipeline sends it
    for up in ups.values():
        up(frame)  # warm-up, as the model rows have: compiles, first-call allocations
    piped = {b: [0, 0.0] for b in backends}    # frames, seconds
    alone = {b: [] for b in backends}          # seconds per model call
    split = {b: dict.fromkeys(("upload", "model", "colour", "download", "encode+mux"), 0.0) for b in backends}
    naive = [0, 0.0]
    for _ in range(rounds):
        for b, up in ups.items():
            alone[b] += timed_calls(lambda up=up, x=xs[b]: up.upscale_tensor(x), MODEL_CALLS_PER_ROUND, 0,
                                    device.type == "cuda")
            stats = upscale_video(clip, folder / "rtsr_out.mp4", up, VideoJob())
            piped[b][0] += stats.frames
            piped[b][1] += stats.seconds
            for k, v in stats.stage_seconds.items():
                split[b][k] = split[b].get(k, 0.0) + v
        frames, seconds = naive_loop(clip, model, folder / "naive_out.mp4")
        naive[0] += frames
        naive[1] += seconds
    rows, stages = [], {}
    for b, up in ups.items():
        name = f"{up.backend.name}-{device.type}"
        rows.append(Row("end-to-end", f"rtsr-{name}", model, label, up.batch, piped[b][0] / piped[b][1],
                        1000 * piped[b][1] / piped[b][0], precision=up.precision,
                        note=f"{piped[b][0]} frames in {rounds} rounds, after a warm-up frame"))
        row = row_from_times("model-alongside", f"{name}-{up.precision}", model, label, up.batch, alone[b],
                             note="the model alone, timed between the end-to-end rounds")
        row.precision = up.precision
        rows.append(row)
        stages[f"{model}/{b}/{label}"] = {k: round(1000 * v / piped[b][0], 2) for k, v in split[b].items()}
    rows.append(Row("end-to-end", "naive-loop-cpu-fp32", model, label, 1, naive[0] / naive[1],
                    1000 * naive[1] / naive[0], note=f"{naive[0]} frames in {rounds} rounds", precision="fp32"))
    return rows, stages


def environment() -> dict[str, str]:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
    except OSError:
        rev = "unknown"
    env = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "git": rev,
           "python": platform.python_version(), "torch": str(torch.__version__), "av": package_version("av"),
           "opencv": cv2.__version__, "tensorrt": package_version("tensorrt"), "openvino": package_version("openvino"),
           "ncnn": package_version("ncnn"), "cpu": platform.processor() or platform.machine(),
           "cores": str(os.cpu_count()), "loadavg_1min_at_start": f"{os.getloadavg()[0]:.2f}",
           "threads": str(torch.get_num_threads()), "device": "cpu",
           "cpu_bf16": ("native: " if devices.native_bf16()[0] else "not native: ") + devices.native_bf16()[1]}
    if torch.cuda.is_available():
        env["device"] = torch.cuda.get_device_name(0)
        env["cuda"] = str(torch.version.cuda)
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            env["driver"] = "unknown"
    return env


def print_table(rows: list[Row]) -> None:
    head = f"{'kind':<11} {'name':<26} {'model':<14} {'input':>9} {'batch':>5} {'fps':>9} {'ms/frame':>9} {'p50 ms':>8} {'p95 ms':>8} {'spread':>7} {'peak MiB':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        peak = f"{r.peak_mem_mib:.0f}" if r.peak_mem_mib else "-"
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        spread = "-" if r.spread_pct is None else f"{r.spread_pct:.0f}%"
        print(f"{r.kind:<11} {r.name:<26} {r.model:<14} {r.size:>9} {r.batch:>5} {r.fps:>9.2f} {r.ms_per_frame:>9.1f} "
              f"{fmt(r.p50_ms):>8} {fmt(r.p95_ms):>8} {spread:>7} {peak:>8}")


def ratios(rows: list[Row], device: torch.device) -> list[str]:
    """Model-only fps of every backend and precision over fp32 torch's (same model, size, batch), and
    each end-to-end run over its model alone and over the naive loop, timed in the same rounds;
    ratios, which a shared machine's load leaves standing."""
    key = lambda r: (r.model, r.size)  # noqa: E731
    base = {(*key(r), r.batch): r.fps for r in rows if r.kind == "model" and r.name == f"torch-{device.type}-fp32"}
    lines = []
    for r in rows:
        ref = base.get((*key(r), r.batch))
        if r.kind == "model" and r.fps > 0 and ref and r.name != f"torch-{device.type}-fp32":
            lines.append(f"{r.model} {r.size} batch {r.batch}: model-only {r.name} / torch-{device.type}-fp32 = "
                         f"{r.fps / ref:.2f}x")
    naive = {key(r): r.fps for r in rows if r.name == "naive-loop-cpu-fp32"}
    for r in rows:
        if r.kind != "end-to-end" or not r.name.startswith("rtsr-"):
            continue
        backend = r.name[len("rtsr-"):]  # "<backend>-<device>"
        only = [m.fps for m in rows if m.kind == "model-alongside" and key(m) == key(r)
                and m.name == f"{backend}-{r.precision}"]
        text = f"{r.model} {r.size} {r.name} ({r.precision}): end-to-end"
        if only:
            text += f" / model-only = {r.fps / only[0]:.2f}"
        if key(r) in naive:
            text += f"; end-to-end / naive loop = {r.fps / naive[key(r)]:.2f}"
        lines.append(text)
    return lines


def software_vulkan() -> str | None:
    """Why Vulkan is left out by default: its default device is a software one (lavapipe), or None."""
    from rtsr.backends.vulkan_backend import default_index, device_label, is_software

    if is_software(default_index()):
        return f"software Vulkan device ({device_label(default_index())}): correct, speed not a GPU's; --backends vulkan times it"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (CPU: < 2 min)")
    parser.add_argument("--models", nargs="*", help="shipped model names (default: all; --quick: srgan-x4-lite)")
    parser.add_argument("--sizes", nargs="*", help="input sizes WxH")
    parser.add_argument("--batches", nargs="*", type=int, help="batch sizes (default 1 2 4 8)")
    parser.add_argument("--frames", type=int, help="frames through each end-to-end run, over all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="end-to-end rounds (each backend, the naive loop, "
                                                              "and each model alone, in turn)")
    parser.add_argument("--precisions", nargs="*", choices=[p for p in PRECISIONS if p != "auto"],
                        help="model rows' precisions (default: fp32 and what auto runs here: bf16 on a CPU "
                             "with native bf16, fp16 on CUDA)")
    parser.add_argument("--backends", nargs="*", choices=BACKENDS,
                        help="backends to time (default: every one that can run here but a software Vulkan device)")
    parser.add_argument("--note", default="", help="what else ran on the machine, for the record")
    parser.add_argument("--model-only", action="store_true", help="model rows only: no baselines, no end to end")
    parser.add_argument("--repeats", type=int, help="timed calls per row (default 20; --quick: 5)")
    parser.add_argument("--json", type=Path, help="where to write the record")
    parser.add_argument("--plot", type=Path, help="draw fps against input size (needs matplotlib)")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    models = args.models or (["srgan-x4-lite"] if args.quick else list(shipped_models()))
    sizes = [parse_size(s) for s in (args.sizes or (["160x90"] if args.quick else DEFAULT_SIZES))]
    batches = args.batches or ([1, 2] if args.quick else [1, 2, 4, 8])
    repeats, warmup = (5, 1) if args.quick else (20, 3)
    repeats = args.repeats or repeats
    precisions = args.precisions or default_precisions(device)
    if device.type == "cpu" and not args.quick and not args.sizes:
        sizes = sizes[:2]  # the big sizes take minutes per call on a CPU
    skipped = {b: unavailable_reason(b, device) for b in args.backends or BACKENDS}
    if not args.backends and skipped.get("vulkan") is None and "vulkan" in skipped:
        skipped["vulkan"] = software_vulkan()
    backends = [b for b, why in skipped.items() if why is None]
    skipped = {b: why for b, why in skipped.items() if why is not None}

    env = environment()
    env["note"] = args.note
    rows: list[Row] = []
    stages: dict[str, dict[str, float]] = {}
    runs = [(b, p) for b in backends for p in precisions if precision_reason(b, p) is None]
    for model in models:
        for size in sizes:
            for batch in batches:
                try:
                    rows.extend(bench_model(model, runs, device, size, batch, repeats, warmup))
                except torch.cuda.OutOfMemoryError:
                    rows.append(Row("model", "all", model, f"{size[0]}x{size[1]}", batch, 0, 0, note="out of memory"))
                    torch.cuda.empty_cache()
    scale = load_weights(resolve_model(models[0]))[0].scale
    for size in sizes if not args.model_only else ():
        rows.extend(bench_resize(size, scale, repeats))
    with tempfile.TemporaryDirectory() as tmp:
        count = args.frames or (12 if args.quick else 48)
        for model in models if not args.model_only else ():
            e2e, split = bench_end_to_end(model, backends, device, sizes[0], max(1, count // args.rounds), args.rounds,
                                          Path(tmp))
            rows.extend(e2e)
            stages.update(split)

    print(f"device: {env['device']}  torch {env['torch']}  git {env['git']}  {env['date']}")
    for b, why in skipped.items():
        print(f"backend {b} not measured: {why}")
    print_table(rows)
    if stages:
        print("\nend-to-end time per frame by stage (ms; on CUDA the device stages are submit times):")
    for key, split in stages.items():
        print(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in split.items()))
    summary = ratios(rows, device)
    print("\n".join(["", *summary]))
    env["loadavg_1min_at_end"] = f"{os.getloadavg()[0]:.2f}"

    out = args.json or ROOT / "benchmarks" / "results" / (
        f"{env['device'].replace(' ', '-')}-{env['date'][:10]}{'-quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"environment": env, "skipped_backends": skipped, "rows": [asdict(r) for r in rows], "stages_ms": stages,
              "ratios": summary}
    out.write_text(json.dumps(record, indent=2, allow_nan=False, default=str))
    print(f"wrote {out}")
    if args.plot:
        plot(rows, args.plot)


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    series: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if r.kind in ("model", "baseline") and r.batch == 1:
            w, h = parse_size(r.size)
            series.setdefault(f"{r.name} {r.model}", []).append((w * h, r.fps))
    for name, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input pixels")
    ax.set_ylabel("frames per second")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
