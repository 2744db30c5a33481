"""rtsr.hosts.gstreamer (issue 14): the rtsrupscale element in Debian's GStreamer and its Python
plugin loader (installed by .ci/run), found the way `rtsr gst-path` says. A real H.264 sample
(tests/realmedia.py) is decoded by GStreamer and teed: the frames the element gets and the ones
it gives are compared (count, timestamps, durations, size) and judged against `Upscaler` on the
same frames; a bad property is one error line; QoS drops late frames of a live source."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rtsr import Upscaler
from rtsr.cli import main
from rtsr.video import color
from tests import realmedia

GST_PYTHON = Path("/usr/bin/python3")  # the Python Debian's plugin loader embeds
MODEL = "srgan-x4-lite"
# (label, caps format, batch property): the three formats one frame a call, and I420 three frames a
# call (17 frames: 5 full batches, the last 2 at EOS)
BRANCHES = (("RGB", "RGB", 1), ("I420", "I420", 1), ("NV12", "NV12", 1), ("I420-batch3", "I420", 3))
CROP = "videocrop right=112 bottom=96"  # 176x144 -> 64x48: the real picture, a small model run

# Runs in GStreamer's Python: the frames before and after the element (teed), their timestamps,
# and the bus's QoS messages, into an .npz.
DRIVER = r'''
import json, sys
import numpy as np, gi
gi.require_version("Gst", "1.0"); gi.require_version("GstVideo", "1.0")
from gi.repository import Gst, GstVideo

description, dest = sys.argv[1], sys.argv[2]
Gst.init(None)
pipeline = Gst.parse_launch(description)
got = {}

def pull(sink, name):
    sample = sink.emit("pull-sample")
    buf, info = sample.get_buffer(), GstVideo.VideoInfo.new_from_caps(sample.get_caps())
    ok, m = buf.map(Gst.MapFlags.READ)
    data = np.frombuffer(m.data, np.uint8)
    planes = []
    for p in range(info.finfo.n_planes):
        h = info.height if p == 0 else (info.height + 1) // 2
        planes.append(np.array(data[info.offset[p]: info.offset[p] + h * info.stride[p]].reshape(h, info.stride[p])))
    buf.unmap(m)
    got[name].append((buf.pts, buf.duration, info.finfo.name, info.width, info.height, planes))
    return Gst.FlowReturn.OK

for sink in pipeline.iterate_sinks():
    got[sink.get_name()] = []
    sink.set_property("emit-signals", True)
    sink.connect("new-sample", pull, sink.get_name())
pipeline.set_state(Gst.State.PLAYING)
bus, qos, error = pipeline.get_bus(), 0, None
while True:
    msg = bus.timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR | Gst.MessageType.QOS)
    if msg is None or msg.type == Gst.MessageType.EOS:
        break
    if msg.type == Gst.MessageType.QOS:
        qos += 1
        continue
    error = msg.parse_error()[0].message
    break
pipeline.set_state(Gst.State.NULL)
arrays, meta = {}, {"error": error, "qos": qos}
for name, frames in got.items():
    meta[name] = [f[:5] for f in frames]
    for n, f in enumerate(frames):
        for p, plane in enumerate(f[5]):
            arrays[f"{name}/{n}/{p}"] = plane
np.savez(dest, meta=json.dumps(meta), **arrays)
'''


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def gst_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment `eval "$(rtsr gst-path)"` makes, with a registry of its own."""
    if shutil.which("gst-launch-1.0") is None or not GST_PYTHON.is_file():
        pytest.skip("GStreamer or Debian's Python is not installed (bash .ci/run installs them)")
    probe = subprocess.run([str(GST_PYTHON), "-c", "import gi; gi.require_version('GstBase', '1.0')"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("Debian's python3-gst-1.0 is not installed (bash .ci/run installs it)")
    # the loader's embedded Python takes its stdlib from the first python3 on PATH: not pyenv's
    own = Path(sys.executable).parent
    path = [p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != own or own == GST_PYTHON.parent]
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=os.pathsep.join(path),
               GST_REGISTRY=str(tmp_path_factory.mktemp("gst") / "registry.bin"))
    lines = subprocess.run([sys.executable, "-m", "rtsr", "gst-path"], capture_output=True,
                           text=True, check=True).stdout
    for line in lines.splitlines():
        if line.startswith("export "):  # export NAME=VALUE, as the shell would read it
            name, _, value = line[len("export "):].partition("=")
            env[name] = subprocess.run(["bash", "-c", f"printf %s {value}"], capture_output=True, text=True,
                                       env=env, check=True).stdout
    return env


def run(env: dict[str, str], description: str, tmp_path: Path) -> tuple[dict, np.lib.npyio.NpzFile]:
    dest = tmp_path / "run.npz"
    # the driver's own numpy must be the one the element gets: that Python's packages first
    proc = subprocess.run([str(GST_PYTHON), "-c", DRIVER, description, str(dest)], capture_output=True, text=True,
                          env=dict(env, PYTHONPATH=env["RTSR_GST_SITE"]), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = np.load(dest)
    return json.loads(str(data["meta"])), data


def planes(data, name: str, n: int, fmt: str, width: int, height: int) -> list[np.ndarray]:
    """The frame's planes without their row padding: Y, U, V (NV12's chroma split), or H x W x 3."""
    rows = [data[f"{name}/{n}/{p}"] for p in range(1 if fmt == "RGB" else 2 if fmt == "NV12" else 3)]
    if fmt == "RGB":
        return [rows[0][:, : width * 3].reshape(height, width, 3)]
    y = rows[0][:, :width]
    if fmt == "NV12":
        uv = rows[1][:, :width].reshape(height // 2, width // 2, 2)
        return [y, uv[..., 0], uv[..., 1]]
    return [y, rows[1][:, : width // 2], rows[2][:, : width // 2]]


@pytest.fixture(scope="module")
def upscaler() -> Upscaler:
    return Upscaler(MODEL, backend="torch", device="cpu")


@pytest.fixture(scope="module")
def formats_run(gst_env, tmp_path_factory: pytest.TempPathFactory):
    """One pipeline: the decoded sample teed into RGB, I420 and NV12, each teed again into the
    frames the element gets (src_FMT) and the ones it gives (out_FMT)."""
    src = realmedia.require_cut("h264_bframes_sar")  # H.264 with B-frames: decoded out of order, shown in order
    branches = " ".join(f"t. ! queue ! videoconvert ! video/x-raw,format={fmt} ! tee name=t{n} "
                        f"t{n}. ! queue ! appsink name=src_{label} sync=false "
                        f"t{n}. ! queue ! rtsrupscale model={MODEL} backend=torch device=cpu batch={batch} "
                        f"! appsink name=out_{label} sync=false" for n, (label, fmt, batch) in enumerate(BRANCHES))
    meta, data = run(gst_env, f"filesrc location={src} ! decodebin ! {CROP} ! tee name=t {branches}",
                     tmp_path_factory.mktemp("gst-formats"))
    return int(realmedia.probe(src)["streams"][0]["nb_read_frames"]), meta, data


@pytest.mark.parametrize(("label", "fmt"), [branch[:2] for branch in BRANCHES])
def test_element_matches_upscaler(label: str, fmt: str, formats_run, upscaler: Upscaler) -> None:
    frames, meta, data = formats_run
    assert meta["error"] is None
    ins, outs = meta[f"src_{label}"], meta[f"out_{label}"]
    assert len(ins) == len(outs) == frames
    assert [f[:2] for f in outs] == [f[:2] for f in ins]  # pts and duration of every frame
    assert {tuple(f[2:]) for f in outs} == {(fmt, 256, 192)} and {tuple(f[2:]) for f in ins} == {(fmt, 64, 48)}
    spec = color.ColorSpec.from_tags(color.SPACE_SMPTE170M, color.RANGE_LIMITED, 0, 0, 48)  # untagged SD
    for n in range(0, len(ins), 4):  # every 4th frame: a B-frame among them, and the model time small
        x, y = planes(data, f"src_{label}", n, fmt, 64, 48), planes(data, f"out_{label}", n, fmt, 256, 192)
        if fmt == "RGB":
            ref = [upscaler(x[0])]
        else:  # the file pipeline's path: rtsr's YUV -> RGB, the model, RGB -> YUV
            with torch.inference_mode():
                rgb = color.yuv_to_rgb(*(torch.from_numpy(p.copy())[None] for p in x), spec)
                ref = [p[0].numpy() for p in color.rgb_to_yuv420(upscaler.upscale_tensor(rgb), spec)]
        for got, want in zip(y, ref):
            assert got.shape == want.shape and psnr(got, want) > 45, (fmt, n)


def test_bad_property_is_one_error(gst_env) -> None:
    """What Upscaler refuses (here the model; tile and device take the same path) stops the pipeline in one line."""
    prop, words = "model=no-such-model", "unknown model 'no-such-model'"
    proc = subprocess.run(["gst-launch-1.0", "videotestsrc", "num-buffers=2", "!", "video/x-raw,width=64,height=48",
                           "!", "rtsrupscale", prop, "!", "fakesink"], capture_output=True, text=True, env=gst_env,
                          timeout=120)
    assert proc.returncode != 0
    errors = [line for line in proc.stdout.splitlines() + proc.stderr.splitlines() if line.startswith("ERROR: from")]
    assert len(errors) == 1 and f"rtsrupscale: {words}" in errors[0], errors
    assert "Traceback" not in proc.stderr


def test_a_model_failing_mid_stream_stops_the_pipeline(gst_env, tmp_path: Path) -> None:
    """A model that loads but fails on the frames (here it wants 4 channels) is an ERROR, not OK buffers
    of uninitialised memory flowing on to the sink with exit 0 (PyGObject turns a raised vfunc into OK)."""
    from rtsr.models import Generator, GeneratorConfig
    from rtsr.models.weights import ModelCard, save_weights

    g = Generator(GeneratorConfig(name="four", num_blocks=1, channels=4, in_channels=4)).eval()
    weights = tmp_path / "four.pt"
    save_weights(weights, g, ModelCard(name="four", config=g.config.to_dict(), description="fails on RGB"))
    proc = subprocess.run(["gst-launch-1.0", "videotestsrc", "num-buffers=3", "!", "video/x-raw,format=RGB,width=32,height=24",
                           "!", "rtsrupscale", f"model={weights}", "backend=torch", "!", "fakesink"],
                          capture_output=True, text=True, env=gst_env, timeout=120)
    assert proc.returncode != 0, proc.stdout
    errors = [line for line in proc.stdout.splitlines() + proc.stderr.splitlines() if line.startswith("ERROR: from")]
    # the first error is the element's (the source then reports the stream it had to stop)
    assert errors and "rtsrupscale: upscaling failed" in errors[0], errors


def test_without_rtsr_one_error_then_found_once_fixed(gst_env, tmp_path: Path) -> None:
    """GStreamer caches which elements its scan found: a first run without RTSR_GST_SITE must fail
    in one line and leave the element findable once the environment is right."""
    env = dict(gst_env, GST_REGISTRY=str(tmp_path / "registry.bin"))
    pipeline = ["gst-launch-1.0", "videotestsrc", "num-buffers=2", "!", "video/x-raw,width=32,height=32", "!",
                "rtsrupscale", f"model={MODEL}", "backend=torch", "device=cpu", "!", "fakesink"]
    broken = subprocess.run(pipeline, capture_output=True, text=True, env={**env, "RTSR_GST_SITE": ""}, timeout=120)
    errors = [line for line in (broken.stdout + broken.stderr).splitlines() if line.startswith("ERROR: from")]
    assert broken.returncode != 0 and len(errors) == 1 and "No module named 'rtsr'" in errors[0], broken.stderr
    fixed = subprocess.run(pipeline, capture_output=True, text=True, env=env, timeout=120)
    assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-2000:]


def test_live_source_drops_late_frames(gst_env, tmp_path: Path) -> None:
    """30 fps live frames into a model far slower than that, no queue between: the element's QoS
    drops the frames that would reach the synchronised sink late, before the model runs them."""
    meta, _ = run(gst_env, "videotestsrc is-live=true num-buffers=30 ! video/x-raw,format=RGB,width=160,height=96,"
                           f"framerate=30/1 ! rtsrupscale model={MODEL} backend=torch device=cpu "
                           "! appsink name=out sync=true qos=true", tmp_path)
    assert meta["error"] is None
    assert 0 < len(meta["out"]) < 30 and meta["qos"] > 0, (len(meta["out"]), meta["qos"])


def test_default_backend_in_a_python_host(gst_env, tmp_path: Path) -> None:
    """backend=auto (the default) in a Python program that imported numpy before GStreamer, as the
    driver does: OpenVINO, one of auto's candidates on a CPU, aborted that process (two C++
    unwinders, see openvino_backend._mixed_unwinders) until auto was told to leave it out there."""
    env = dict(gst_env, RTSR_CACHE_DIR=str(tmp_path / "cache"))  # measured afresh, not a cached choice
    meta, _ = run(env, "videotestsrc num-buffers=6 ! video/x-raw,format=I420,width=64,height=48 "
                       f"! rtsrupscale model={MODEL} device=cpu ! appsink name=out sync=false", tmp_path)
    assert meta["error"] is None
    assert [tuple(f[2:]) for f in meta["out"]] == [("I420", 256, 192)] * 6


def test_gst_path_prints_the_exports(capsys: pytest.CaptureFixture) -> None:
    assert main(["gst-path"]) == 0
    lines = capsys.readouterr().out.splitlines()
    exports = [line.split("=", 1)[0] for line in lines if line.startswith("export ")]
    assert exports == ["export GST_PLUGIN_PATH", "export RTSR_GST_SITE"]
    plugin_dir = lines[1].split("=", 1)[1].split('"')[0]
    assert (Path(plugin_dir) / "python" / "rtsrupscale.py").is_file()
