"""What the host glue costs per frame (issue 14): the VapourSynth filter and the GStreamer element
against the bare `Upscaler` on the same frames, each in the Python its host runs (VapourSynth:
the 3.12 venv of .ci/run; GStreamer: Debian's Python with this Python's packages).

    python benchmarks/hosts.py                      # 320x180, srgan-x4-lite, CPU, 3 timed frames
    python benchmarks/hosts.py --frames 5 --note "idle machine"

Per frame, "model" is the time inside the Upscaler call the host makes (and the bare call's
time, round-robin with it), "colour" the element's calls of rtsr's YUV <-> RGB (rtsr.video.color,
which the file pipeline makes too; VapourSynth's YUV goes through core.resize, counted as glue),
"glue" the rest of the host's time for that frame: for VapourSynth get_frame's wall time, for
GStreamer the element's time between a buffer entering its sink pad and leaving its src pad,
less the model and the colour conversion. Writes a JSON record under
benchmarks/results/ (benchmarks/report.py lists its rows).

This file runs under each host's interpreter too (`--side vs|gst`), with the standard library
only at import time.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "sample.mp4"  # the repo's sample, scaled to the benchmark size


class Clock:
    """Times every outermost call of the given functions (owner, name) in this process."""

    def __init__(self, *targets: tuple[object, str]) -> None:
        self.seconds, self.depth = 0.0, 0
        for owner, name in targets:
            setattr(owner, name, self._timed(getattr(owner, name)))

    def _timed(self, method):
        def timed(*args, **kwargs):
            self.depth += 1
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self.seconds += time.perf_counter() - start
        return timed

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def model_clock() -> Clock:
    """Every outermost Upscaler entry (numpy or tensor)."""
    from rtsr.upscaler import Upscaler

    return Clock((Upscaler, "__call__"), (Upscaler, "upscale_tensor"))


def side_vs(args: argparse.Namespace) -> list[dict]:
    import numpy as np
    import vapoursynth as vs

    from rtsr.hosts.vapoursynth import upscale
    from rtsr.upscaler import Upscaler

    clock = model_clock()
    bare = Upscaler(args.model, device="cpu")
    base = vs.core.bs.VideoSource(str(SAMPLE))
    rows = []
    for fmt in ("RGB24", "YUV420P8"):
        clip = base.resize.Bicubic(width=args.width, height=args.height, format=getattr(vs, fmt), matrix_in=6,
                                   matrix=None if fmt == "RGB24" else 6)
        rgb = base.resize.Bicubic(width=args.width, height=args.height, format=vs.RGB24, matrix_in=6)
        host = upscale(clip, model=args.model, device="cpu")
        host.get_frame(0)  # warm-up: the first call of each
        bare(np.zeros((args.height, args.width, 3), np.uint8))
        clock.take()
        samples = []
        for n in range(1, args.frames + 1):
            frame = rgb.get_frame(n)
            picture = np.ascontiguousarray(np.stack([np.asarray(frame[p]) for p in range(3)], -1))
            start = time.perf_counter()
            bare(picture)
            bare_total = time.perf_counter() - start
            bare_model = clock.take()
            start = time.perf_counter()
            host.get_frame(n)
            host_total = time.perf_counter() - start
            samples.append((bare_total, bare_model, host_total, clock.take(), 0.0))
        rows.append(_row("vapoursynth", fmt, args, samples))
    return rows


def side_gst(args: argparse.Namespace) -> list[dict]:
    import site

    site.addsitedir(os.environ["RTSR_GST_SITE"])  # as the element's loader stub does: the editable rtsr
    import gi

    gi.require_version("Gst", "1.0")
    import numpy as np
    from gi.repository import Gst

    from rtsr.upscaler import Upscaler
    from rtsr.video import color

    Gst.init(None)
    clock = model_clock()
    colour = Clock((color, "yuv_to_rgb"), (color, "rgb_to_yuv420"))  # the element calls them as color.NAME
    bare = Upscaler(args.model, backend="torch", device="cpu")
    rows = []
    for fmt in ("RGB", "I420"):
        pipeline = Gst.parse_launch(
            f"filesrc location={SAMPLE} ! decodebin ! videoscale ! videoconvert "
            f"! video/x-raw,format={fmt},width={args.width},height={args.height} ! queue "
            f"! rtsrupscale name=up model={args.model} backend=torch device=cpu ! fakesink sync=false")
        element = pipeline.get_by_name("up")
        entered: dict[int, float] = {}
        spent: list[tuple[float, float, float]] = []  # (element, model, colour conversion) seconds per buffer

        def enter(_pad, info):
            entered[info.get_buffer().pts] = time.perf_counter()
            return Gst.PadProbeReturn.OK

        def leave(_pad, info):
            spent.append((time.perf_counter() - entered.pop(info.get_buffer().pts), clock.take(), colour.take()))
            return Gst.PadProbeReturn.OK

        element.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, enter)
        element.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, leave)
        pipeline.set_state(Gst.State.PLAYING)
        bus = pipeline.get_bus()
        while len(spent) < args.frames + 1:  # the first buffer is the warm-up
            msg = bus.timed_pop_filtered(100 * Gst.MSECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
            if msg is not None:
                raise SystemExit(f"gst: the pipeline ended after {len(spent)} frames: {msg.type}")
        pipeline.set_state(Gst.State.NULL)
        bare(np.zeros((args.height, args.width, 3), np.uint8))
        clock.take()
        samples = []
        for element_total, element_model, element_colour in spent[1:args.frames + 1]:
            picture = np.random.default_rng(len(samples)).integers(0, 256, (args.height, args.width, 3), np.uint8)
            start = time.perf_counter()
            bare(picture)
            samples.append((time.perf_counter() - start, clock.take(), element_total, element_model, element_colour))
        rows.append(_row("gstreamer", fmt, args, samples))
    return rows


def _row(host: str, fmt: str, args: argparse.Namespace, samples: list[tuple[float, ...]]) -> dict:
    """samples: (bare total, bare model, host total, model inside the host, rtsr's YUV<->RGB inside the
    host) seconds per frame; glue is the host's time outside both."""
    bare_model = statistics.median(s[1] for s in samples)
    glue = statistics.median(s[2] - s[3] - s[4] for s in samples)
    host_total = statistics.median(s[2] for s in samples)
    return {"kind": "host", "name": f"{host}-{fmt}", "model": args.model, "size": f"{args.width}x{args.height}",
            "batch": 1, "fps": 1 / host_total, "ms_per_frame": host_total * 1000,
            "bare_upscaler_ms": statistics.median(s[0] for s in samples) * 1000,
            "model_ms_in_host": statistics.median(s[3] for s in samples) * 1000,
            "bare_model_ms": bare_model * 1000, "colour_ms_in_host": statistics.median(s[4] for s in samples) * 1000,
            "glue_ms": glue * 1000, "glue_pct_of_model": 100 * glue / bare_model,
            "frames": len(samples), "python": platform.python_version(), "torch": _torch_version(), "note": args.note}


def _torch_version() -> str:
    import torch

    return torch.__version__


def run_side(python: str, side: str, args: argparse.Namespace, env: dict[str, str]) -> list[dict]:
    cmd = [python, str(Path(__file__).resolve()), "--side", side, "--frames", str(args.frames), "--model", args.model,
           "--size", f"{args.width}x{args.height}", "--note", args.note]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{side}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--side", choices=("vs", "gst"), help=argparse.SUPPRESS)
    p.add_argument("--model", default="srgan-x4-lite")
    p.add_argument("--size", default="320x180")
    p.add_argument("--frames", type=int, default=3, help="timed frames per row (after one warm-up)")
    p.add_argument("--note", default="")
    p.add_argument("--json", type=Path, default=None, help="the record (default: benchmarks/results/...-hosts.json)")
    args = p.parse_args()
    args.width, args.height = (int(v) for v in args.size.split("x"))
    if args.side:
        print(json.dumps((side_vs if args.side == "vs" else side_gst)(args)))
        return 0
    import sysconfig

    import torch

    from rtsr.hosts import GST_PLUGIN_DIR

    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    vs_python = os.environ.get("RTSR_VS_PYTHON", str(Path.home() / ".cache/rtsr-ci/vs-py312/bin/python"))
    rows = run_side(vs_python, "vs", args, env)
    own = str(Path(sys.executable).parent)  # GStreamer's embedded Python must not take pyenv's stdlib
    site = sysconfig.get_paths()["purelib"]
    gst_env = dict(env, GST_PLUGIN_PATH=str(GST_PLUGIN_DIR), RTSR_GST_SITE=site, PYTHONPATH=site,
                   PATH=os.pathsep.join(d for d in env["PATH"].split(os.pathsep) if d != own))
    rows += run_side("/usr/bin/python3", "gst", args, gst_env)
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    record = {"environment": {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                              "git": revision.strip(), "python": platform.python_version(), "torch": torch.__version__,
                              "cpu": platform.machine(), "threads": env["OMP_NUM_THREADS"], "device": "cpu"},
              "rows": rows}
    day = dt.date.today().isoformat()
    dest = args.json or ROOT / "benchmarks" / "results" / f"cpu-{platform.machine()}-{os.cpu_count()}core-{day}-hosts.json"
    dest.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{'row':<22} {'host ms':>9} {'model ms':>9} {'bare model ms':>14} {'colour ms':>10} {'glue ms':>8} "
          f"{'glue %':>7}")
    for r in rows:
        print(f"{r['name']:<22} {r['ms_per_frame']:>9.1f} {r['model_ms_in_host']:>9.1f} {r['bare_model_ms']:>14.1f} "
              f"{r['colour_ms_in_host']:>10.1f} {r['glue_ms']:>8.1f} {r['glue_pct_of_model']:>6.2f}%")
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
