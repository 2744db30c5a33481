"""rtsr's TensorRT calls checked against NVIDIA's real Python bindings, TensorRT 10.x and 11.x.

TensorRT's libraries cannot be installed on these CPU machines, but its bindings wheels
(tensorrt-cu1x-bindings, ~1.3 MB) are real binary wheels. They load against stand-in libraries
that export the nine C entry points they link to; that is enough to check every class, enum,
method and argument that rtsr/backends/tensorrt.py uses (tests/trt_api_probe.py) and to build our
progress monitor on TensorRT's own IProgressMonitor. Nothing here builds or runs an engine: that
needs a GPU (tests/test_gpu.py).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BINDINGS = {"10": "tensorrt-cu12-bindings==10.16.1.11", "11": "tensorrt-cu13-bindings==11.4.0.106"}
# the C entry points the bindings import from libnvinfer, libnvonnxparser and libnvinfer_plugin
STUBS = {
    "nvinfer": ["createInferBuilder_INTERNAL", "createInferRefitter_INTERNAL", "createInferRuntime_INTERNAL",
                "getBuilderPluginRegistry", "getPluginRegistry"],
    "nvonnxparser": ["createNvOnnxParserRefitter_INTERNAL", "createNvOnnxParser_INTERNAL",
                     "getNvOnnxParserVersion"],
    "nvinfer_plugin": ["initLibNvInferPlugins"],
}

pytestmark = pytest.mark.skipif(sys.platform != "linux" or platform.machine() != "x86_64",
                                reason="TensorRT bindings wheels are fetched for x86_64 Linux only")


def _bindings(requirement: str, cache: Path) -> Path:
    """The bindings wheel for this Python, unpacked (downloaded once into pytest's cache)."""
    site = cache / requirement.replace("==", "-")
    if not (site / "tensorrt_bindings").is_dir():
        py = f"{sys.version_info.major}.{sys.version_info.minor}"
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "--python-version", py, "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
             "-d", str(cache / "wheels"), requirement], capture_output=True, text=True, timeout=300)
        wheels = sorted((cache / "wheels").glob(requirement.split("==")[0].replace("-", "_") + "-"
                                                + requirement.split("==")[1] + "-*.whl"))
        if done.returncode or not wheels:
            pytest.skip(f"could not download {requirement}: {done.stderr.strip().splitlines()[-1:]}")
        with zipfile.ZipFile(wheels[-1]) as wheel:
            wheel.extractall(site)
    return site


def _stub_libs(major: str, out: Path) -> Path:
    """Stand-in libnvinfer & co. that export the entry points as functions returning 0."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the stand-in TensorRT libraries")
    out.mkdir(parents=True, exist_ok=True)
    for lib, symbols in STUBS.items():
        soname = f"lib{lib}.so.{major}"
        source = out / f"{lib}.c"
        source.write_text("".join(f"void *{s}(void) {{ return 0; }}\n" for s in symbols))
        subprocess.run([compiler, "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(out / soname),
                        str(source)], check=True, capture_output=True)
    return out


def _probe_env(major: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Environment in which `import tensorrt_bindings` loads TensorRT `major`'s bindings."""
    site = _bindings(BINDINGS[major], request.config.cache.mkdir("tensorrt-bindings"))
    libs = _stub_libs(major, tmp_path / "lib")
    return dict(os.environ, LD_LIBRARY_PATH=str(libs),
                PYTHONPATH=os.pathsep.join([str(site), str(ROOT), str(ROOT / "tests")]))


@pytest.mark.parametrize("major", sorted(BINDINGS))
def test_backend_uses_only_tensorrt_api_that_exists(major: str, request: pytest.FixtureRequest,
                                                     tmp_path: Path) -> None:
    env = _probe_env(major, request, tmp_path)
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "trt_api_probe.py")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_probe_catches_a_wrong_call(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The probe itself: a renamed method, a wrong keyword and an extra argument are each reported."""
    source = (ROOT / "rtsr" / "backends" / "tensorrt.py").read_text()
    edits = [("ctx.execute_async_v3(", "ctx.execute_async_v2("),
             ("ignore_mismatch=False", "ignore=False"),
             ("trt.OnnxParser(network, logger)", "trt.OnnxParser(network, logger, 0)")]
    for old, _ in edits:
        assert old in source, old
    script = ("import json, sys, trt_api_probe as p; src = sys.stdin.read(); "
              f"print(json.dumps([len(p.problems(src.replace(a, b))) for a, b in {edits!r}]))")
    done = subprocess.run([sys.executable, "-c", script], input=source, env=_probe_env("11", request, tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [1, 1, 1]
