"""rtsr.hosts.vapoursynth (issue 14): the filter in a real VapourSynth R74+ core, run by the
Python 3.12 venv that .ci/run sets up (VapourSynth's wheel needs 3.12), on real sample files
(tests/realmedia.py) read by bestsource. Output format, size and frame count, every frame's
durations and tags against its source frame, pixels against `Upscaler` on the same frames,
frames asked for out of order by several threads at once with batching, one-sentence errors,
and the example script through vspipe."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rtsr import Upscaler
from rtsr.cli import main
from rtsr.hosts import vapoursynth_script
from tests import realmedia

ROOT = Path(__file__).resolve().parent.parent
VS_PYTHON = Path(os.environ.get("RTSR_VS_PYTHON", Path.home() / ".cache/rtsr-ci/vs-py312/bin/python"))
MODEL = "srgan-x4-lite"
ORDER = [3, 0, 4, 1, 2]  # a seek back and forth, all asked for at once

# Runs in the 3.12 venv: each case's source frames (as handed to upscale) and output frames, with
# their properties, into one .npz; the bad calls' messages into its "errors".
DRIVER = r'''
import json, sys
import numpy as np, vapoursynth as vs
from rtsr.hosts.vapoursynth import upscale

cases, dest = json.loads(sys.argv[1]), sys.argv[2]
core = vs.core
core.num_threads = 2
arrays, meta = {}, {}

def props(frame):
    return {k: (int(v) if isinstance(v, int) else str(v)) for k, v in frame.props.items()}

def store(name, clip, frames):
    meta[name] = {"format": clip.format.name, "size": [clip.width, clip.height], "frames": clip.num_frames,
                  "fps": [clip.fps.numerator, clip.fps.denominator], "props": [props(f) for f in frames]}
    for n, f in enumerate(frames):
        for p in range(f.format.num_planes):
            arrays[f"{name}/{n}/{p}"] = np.array(f[p])

for case in cases:
    src = core.bs.VideoSource(case["source"])
    src = src.std.Crop(right=src.width - 64, bottom=src.height - 48)[:5]
    if case["format"]:
        src = src.resize.Bicubic(format=getattr(vs, case["format"]), matrix_in=6)
    out = upscale(src, model=case["model"], device="cpu", batch=case["batch"])
    futures = {n: out.get_frame_async(n) for n in case["order"]}  # in flight together on 2 threads
    got = {n: fut.result() for n, fut in futures.items()}
    store(case["name"] + "/src", src, [src.get_frame(n) for n in range(src.num_frames)])
    store(case["name"] + "/out", out, [got[n] for n in range(out.num_frames)])
    if src.format.color_family == vs.YUV:  # both as RGBS through the tags the filter reads
        tags = dict(matrix_in=6, range_in=0, chromaloc_in=0)
        for name, clip in (("src", src), ("out", out)):
            rgb = clip.resize.Bicubic(format=vs.RGBS, **tags)
            store(case["name"] + "/" + name + "_rgbs", rgb, [rgb.get_frame(n) for n in range(rgb.num_frames)])

clip = core.bs.VideoSource(cases[0]["source"])[:2]
bad = {"tile": lambda: upscale(clip, tile=8), "model": lambda: upscale(clip, model="no-such-model"),
       "gray": lambda: upscale(clip.resize.Point(format=vs.GRAY8)), "batch": lambda: upscale(clip, batch=0),
       "device": lambda: upscale(clip, device="tpu"), "not_a_clip": lambda: upscale("clip.mkv")}
errors = {}
for name, call in bad.items():
    try:
        call()
        errors[name] = None
    except vs.Error as exc:
        errors[name] = str(exc)
meta["errors"] = errors
np.savez(dest, meta=json.dumps(meta), **arrays)
'''


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def vs_python() -> Path:
    if not VS_PYTHON.is_file():
        pytest.skip(f"no Python 3.12 venv with VapourSynth at {VS_PYTHON} (bash .ci/run sets it up; "
                    "RTSR_VS_PYTHON names another)")
    return VS_PYTHON


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    """One 3.12 run over every case: (meta, arrays)."""
    python = vs_python()
    carphone = realmedia.require_cut("h264_bframes_sar")  # YUV420P8, H.264 B-frames, SAR 128:117
    cinepak = realmedia.require_cut("cinepak_sparse_avi")  # RGB24, variable frame durations
    cases = [dict(name="yuv420p8", source=str(carphone), format=None, batch=2),
             dict(name="rgbs", source=str(carphone), format="RGBS", batch=3),
             dict(name="rgb24_vfr", source=str(cinepak), format=None, batch=1)]
    for case in cases:
        case.update(model=MODEL, order=ORDER)
    dest = tmp_path_factory.mktemp("vs") / "run.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([str(python), "-c", DRIVER, json.dumps(cases), str(dest)], capture_output=True, text=True,
                          env=env, cwd=dest.parent, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = np.load(dest)
    return json.loads(str(data["meta"])), data


def frames(data, name: str, planes: int = 3) -> np.ndarray:
    """5 x planes x H x W (all planes of one size)."""
    return np.stack([np.stack([data[f"{name}/{n}/{p}"] for p in range(planes)]) for n in range(5)])


@pytest.fixture(scope="module")
def upscaler() -> Upscaler:
    return Upscaler(MODEL, device="cpu")


def check_clip(meta: dict, case: str, fmt: str) -> None:
    src, out = meta[f"{case}/src"], meta[f"{case}/out"]
    assert src["format"] == out["format"] == fmt
    assert out["size"] == [64 * 4, 48 * 4] and src["size"] == [64, 48]
    assert out["frames"] == src["frames"] == 5
    assert out["fps"] == src["fps"]
    # every property of every frame is its source frame's: durations (VFR too), colour tags, SAR
    assert out["props"] == src["props"]


def test_rgb24_vfr_matches_upscaler(run, upscaler: Upscaler) -> None:
    meta, data = run
    check_clip(meta, "rgb24_vfr", "RGB24")
    durations = [(p["_DurationNum"], p["_DurationDen"]) for p in meta["rgb24_vfr/out"]["props"]]
    assert len(set(durations)) > 1, durations  # the sample really is VFR
    src = frames(data, "rgb24_vfr/src").transpose(0, 2, 3, 1)  # planar -> N x H x W x 3
    out = frames(data, "rgb24_vfr/out").transpose(0, 2, 3, 1)
    assert out.dtype == np.uint8
    assert psnr(out, upscaler(np.ascontiguousarray(src)), 255) > 45


def test_rgbs_batched_out_of_order_matches_upscaler(run, upscaler: Upscaler) -> None:
    meta, data = run
    check_clip(meta, "rgbs", "RGBS")
    src, out = frames(data, "rgbs/src"), frames(data, "rgbs/out")
    assert out.dtype == np.float32
    ref = upscaler(torch.from_numpy(src)).numpy()
    for n in range(5):  # each frame is its own source's, whichever batch and thread made it
        assert psnr(out[n], ref[n], 1.0) > 45, n


def test_yuv420_keeps_format_and_tags(run, upscaler: Upscaler) -> None:
    meta, data = run
    check_clip(meta, "yuv420p8", "YUV420P8")
    assert meta["yuv420p8/out"]["props"][0]["_SARNum"] == 128  # the sample's pixel aspect, kept
    # the output's picture through the same tags, against the model on the source's
    src, out = frames(data, "yuv420p8/src_rgbs"), frames(data, "yuv420p8/out_rgbs")
    ref = upscaler(torch.from_numpy(src)).numpy().clip(0, 1)
    # measured 53.5 dB: what 8-bit 4:2:0 keeps of the model's RGB output
    assert psnr(out, ref, 1.0) > 45


def test_bad_arguments_are_one_sentence(run) -> None:
    errors = run[0]["errors"]
    expected = {"tile": "tile size 8 is too small", "model": "unknown model 'no-such-model'",
                "gray": "Gray8 is not supported", "batch": "batch must be a whole number",
                "device": "unknown device 'tpu'", "not_a_clip": "clip must be a video clip"}
    for name, words in expected.items():
        message = errors[name]
        assert message is not None and message.startswith("rtsr.upscale: ") and words in message, (name, message)
        assert "\n" not in message and "Traceback" not in message


def test_example_script_through_vspipe(tmp_path: Path) -> None:
    """The README's live line without the player: vspipe -c y4m examples/upscale.vpy - (5 frames)."""
    vspipe = vs_python().parent / "vspipe"
    src = realmedia.require_cut("h264_bframes_sar")
    times = tmp_path / "times.txt"
    proc = subprocess.run([str(vspipe), "-c", "y4m", "-a", f"input={src}", "-e", "4", "-t", str(times),
                           str(ROOT / "examples/upscale.vpy"), "-"], capture_output=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    header, _, body = proc.stdout.partition(b"\n")
    fields = header.decode().split()
    assert fields[0] == "YUV4MPEG2" and {"W704", "H576", "F30000:1001"} <= set(fields), fields
    assert [f for f in fields if f.startswith("C")] in (["C420"], ["C420mpeg2"], ["C420jpeg"]), fields
    frame = 704 * 576 * 3 // 2
    assert body.count(b"FRAME\n") == 5 and len(body) == 5 * (len(b"FRAME\n") + frame)
    stamps = [float(t) for t in times.read_text().split()[4:]]  # after the "# timecode format v2" header
    assert np.allclose(stamps, [n * 1001 / 30 for n in range(5)], atol=0.01), stamps


def test_example_is_what_vs_script_writes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert (ROOT / "examples/upscale.vpy").read_text() == vapoursynth_script("samples/sample.mp4", model=MODEL)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")  # vs-script only names the file
    assert main(["vs-script", str(video), "--model", MODEL, "--batch", "2"]) == 0
    script = (tmp_path / "clip.vpy").read_text()
    assert repr(str(video.resolve())) in script and "batch=2" in script and f"model={MODEL!r}" in script
    assert "vspipe -c y4m" in capsys.readouterr().out
    assert main(["vs-script", str(video)]) == 2  # exists: not replaced without --overwrite
    assert capsys.readouterr().err.strip() == f"rtsr: error: {tmp_path / 'clip.vpy'} exists (--overwrite replaces it)"


def test_import_rtsr_needs_no_host() -> None:
    code = ("import sys, rtsr, rtsr.hosts, rtsr.cli; "
            "print(sorted(m for m in ('vapoursynth', 'gi') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
