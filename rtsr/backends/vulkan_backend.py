"""Vulkan backend through ncnn: any GPU with a Vulkan driver (AMD, Intel, Apple via MoltenVK, NVIDIA).

The generator's cached ONNX export (artifacts.cached_onnx) is converted once by pnnx (PyPI's
`pnnx`, the converter ncnn ships) into an ncnn param/bin pair, kept in the user cache folder
(`vulkan/`, keyed by model hash and pnnx version: the pair holds no device or shape). ncnn's nets
take any input size, so one net serves every frame and tile shape.

Frames stay float32 on the host side; on the device ncnn stores activations in fp16 where the
device has fp16 storage (precision auto/fp16; ncnn turns it off itself where the device lacks it,
and `precision` then says fp32) and computes in fp32 (fp16 arithmetic is left off).

Tested on lavapipe (Mesa's software Vulkan device on the CPU): correct there, speed unmeasured on
a real GPU.
"""
from __future__ import annotations

import functools
import logging
import os
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from rtsr.backends.artifacts import backend_cache_dir, cached_onnx, key_part, write_cached
from rtsr.backends.base import BackendUnavailable
from rtsr.backends.tensorrt import model_hash
from rtsr.errors import RtsrError
from rtsr.models.srgan import Generator

log = logging.getLogger(__name__)
CPU_DEVICE_TYPE = 3  # VkPhysicalDeviceType CPU in ncnn's GpuInfo.type(): a software device (lavapipe, SwiftShader)
DEVICE_TYPES = {0: "discrete GPU", 1: "integrated GPU", 2: "virtual GPU", CPU_DEVICE_TYPE: "software (CPU)"}
CONVERT_TIMEOUT_S = 600


def _ncnn():
    for module in ("ncnn", "pnnx", "onnx"):
        try:
            __import__(module)
        except ImportError:
            raise BackendUnavailable(f"the {module} package is not installed (pip install 'rtsr[vulkan]')") from None
    import ncnn

    _quiet_gpu_instance(ncnn)
    return ncnn


@functools.cache
def _quiet_gpu_instance(ncnn) -> None:
    """Create ncnn's Vulkan instance once, its device report (printed to the process's stderr by
    C code, 4 lines per device) going to the debug log instead: only rtsr's CLI writes to the terminal."""
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            ncnn.create_gpu_instance()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        log.debug("ncnn Vulkan devices:\n%s", sink.read().decode(errors="replace").rstrip())


def unavailable_reason(device: torch.device, index: int | None = None) -> str | None:
    """Why the Vulkan backend cannot run Vulkan device `index` (None: ncnn's default) with frames
    on torch device `device`, or None when it can."""
    if device.type != "cpu":
        return f"the Vulkan backend takes frames on the CPU (device cpu), not {device.type}"
    try:
        ncnn = _ncnn()
    except BackendUnavailable as exc:
        return str(exc)
    count = ncnn.get_gpu_count()
    if count == 0:
        return ("no Vulkan device found (install the GPU's Vulkan driver; Debian's mesa-vulkan-drivers "
                "has lavapipe, a software device)")
    if index is not None and not 0 <= index < count:
        return f"Vulkan device {index} asked for, but {count} Vulkan device(s) are visible (0..{count - 1})"
    return None


def default_index() -> int:
    """The Vulkan device ncnn picks when none is named (a discrete GPU before an integrated one)."""
    return _ncnn().get_default_gpu_index()


def device_label(index: int) -> str:
    """'llvmpipe (...), software (CPU)' for Vulkan device `index`."""
    info = _ncnn().get_gpu_info(index)
    return f"{info.device_name()}, {DEVICE_TYPES.get(info.type(), 'unknown type')}"


def is_software(index: int) -> bool:
    return _ncnn().get_gpu_info(index).type() == CPU_DEVICE_TYPE


def converted_model(generator: Generator, digest: str) -> tuple[Path, Path]:
    """The ncnn param and bin of `generator`, converted by pnnx on first use."""
    version = metadata.version("pnnx")
    stem = backend_cache_dir("vulkan") / f"{digest}_pnnx{key_part(version)}_fp32"
    param, weights = stem.with_suffix(".param"), stem.with_suffix(".bin")
    if param.is_file() and weights.is_file():
        return param, weights
    import pnnx

    onnx_path = cached_onnx(generator, digest)
    with tempfile.TemporaryDirectory(prefix="rtsr-pnnx-") as tmp:
        out = {k: str(Path(tmp) / f"model.{k}") for k in ("pnnxparam", "pnnxbin", "pnnxpy", "pnnxonnx",
                                                           "ncnnparam", "ncnnbin", "ncnnpy")}
        # fp16=0: weights stay fp32 in the bin; the device's fp16 storage is chosen at load time
        cmd = [pnnx.EXEC_PATH, str(onnx_path), "inputshape=[1,3,64,64]f32", "fp16=0",
               *(f"{k}={v}" for k, v in out.items())]
        log.info("converting %s to ncnn with pnnx %s (once per model)", generator.config.name, version)
        done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S)
        if done.returncode != 0 or not Path(out["ncnnparam"]).is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RtsrError(f"pnnx could not convert the model to ncnn (exit {done.returncode}): {' | '.join(tail)}")
        VulkanBackend.conversions += 1
        write_cached(weights, Path(out["ncnnbin"]).read_bytes())
        write_cached(param, Path(out["ncnnparam"]).read_bytes())  # the param last: it marks a whole pair
    return param, weights


class VulkanBackend:
    """Runs N x 3 x H x W float32 CPU tensors through ncnn on Vulkan device `index` (None: the default).

    `conversions` counts real pnnx conversions (a cache hit loads the stored pair), for tests."""

    name = "vulkan"
    conversions = 0

    def __init__(self, generator: Generator, device: torch.device, precision: str = "auto",
                 index: int | None = None) -> None:
        reason = unavailable_reason(device, index)
        if reason:
            raise BackendUnavailable(f"backend 'vulkan' unavailable: {reason}")
        if precision == "bf16":
            raise RtsrError("precision bf16 is for CPUs; the Vulkan backend runs fp16 storage (auto) or fp32")
        ncnn = _ncnn()
        self.device, self.scale, self.dtype = device, generator.scale, torch.float32
        self.index = default_index() if index is None else index
        self.software = is_software(self.index)
        param, weights = converted_model(generator, model_hash(generator))
        net = ncnn.Net()
        net.opt.use_vulkan_compute = True
        net.opt.num_threads = torch.get_num_threads()
        fp16 = precision in ("auto", "fp16")
        net.opt.use_fp16_storage = net.opt.use_fp16_packed = fp16
        net.opt.use_fp16_arithmetic = False  # fp32 math: fp16 storage alone keeps parity with fp32 torch
        net.set_vulkan_device(self.index)
        if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
            raise RtsrError(f"ncnn could not load {param.name}; delete it from {param.parent} to convert again")
        self.precision = "fp16" if net.opt.use_fp16_storage else "fp32"  # ncnn clears it where the device lacks it
        if precision == "fp16" and self.precision != "fp16":
            raise RtsrError(f"precision fp16 asked for, but Vulkan device {self.index} has no fp16 storage")
        self._net, self._ncnn = net, ncnn
        self._input, self._output = net.input_names()[0], net.output_names()[0]
        log.info("vulkan backend on device %d (%s; %s storage)%s", self.index, device_label(self.index), self.precision,
                 ": correct on software Vulkan, speed unmeasured" if self.software else "")

    def _mat(self, frame: np.ndarray):
        """A C x H x W float32 frame as an ncnn Mat built by ncnn (its own channel stride): a Mat
        made straight from the numpy array gave wrong Vulkan results whenever H*W % 4 != 0
        (the CPU path was right), measured with ncnn 1.0.20261020 on lavapipe."""
        c, h, w = frame.shape
        mat = self._ncnn.Mat(w, h, c)
        for i in range(c):
            np.asarray(mat.channel(i))[:] = frame[i]
        return mat

    @torch.inference_mode()
    def run(self, x: torch.Tensor, stream: "torch.cuda.Stream | None" = None) -> torch.Tensor:
        n, c, h, w = x.shape
        out = torch.empty((n, c, h * self.scale, w * self.scale), dtype=torch.float32)
        out_np = out.numpy()
        frames = x.detach().to(device="cpu", dtype=torch.float32).numpy()
        for i in range(n):
            ex = self._net.create_extractor()
            ex.input(self._input, self._mat(frames[i]))
            ret, y = ex.extract(self._output)
            if ret != 0:
                raise RtsrError(f"ncnn failed on a {w}x{h} input on Vulkan device {self.index} (error {ret})")
            for ch in range(c):
                out_np[i, ch] = np.asarray(y.channel(ch))
        return out
