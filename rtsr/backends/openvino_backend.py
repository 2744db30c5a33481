"""OpenVINO backend: the generator's ONNX export compiled by OpenVINO, on the CPU (or an Intel GPU).

Compiled once per input shape: on 2 cores of this project's CPU a model reshaped to the static
input ran srgan-x4-lite at 320x180 13% (fp32) to 20% (bf16) faster than the same model with
dynamic height and width, and a compile takes about 0.1 s. Each compiled model is exported to
the user cache folder (rtsr.locations; `openvino/`) under a key of everything that makes it
valid: model hash, OpenVINO version, device, precision and shape, so a later run imports it
instead of compiling (and the ONNX export, the slow part, is cached too: artifacts.cached_onnx).

In bf16 (OpenVINO's default on CPUs with bf16 units, about 5x faster than fp32 there) a model
with the bicubic skip runs as its residual part and the skip is added here in fp32: bf16's 8
significant bits put a [0, 1] output up to half a code value off, which cost a smooth held-out
photo crop (`bridge`) 0.9 dB against fp32; the residual path is within 0.02 dB of it, and the
skip costs 10 ms of a 230 ms srgan-x4 frame at 192 x 128 (1 thread).

Frames of a batch go through an AsyncInferQueue: while one request computes, the next frame is
copied into another request and a finished one is copied out, so copies and compute overlap.
"""
from __future__ import annotations

import ctypes
import logging
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rtsr.backends.artifacts import backend_cache_dir, cached_onnx, key_part
from rtsr.backends.base import BackendUnavailable
from rtsr.backends.tensorrt import model_hash
from rtsr.devices import resolve_precision
from rtsr.errors import RtsrError
from rtsr.locations import mark_used, trim_cache, write_cache_file
from rtsr.models.srgan import Generator, residual_part
from rtsr.settings import cache_bound_bytes

log = logging.getLogger(__name__)
MAX_COMPILED = 8   # shapes kept compiled in memory: whole frames and edge tiles of a video
JOBS = 2           # infer requests in flight: one computes while the other is filled or emptied
OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
RTSR_PRECISION = {v: k for k, v in OV_PRECISION.items()}


def _openvino():
    """The openvino module, and onnx, which torch's ONNX export (what OpenVINO reads) needs."""
    for module in ("openvino", "onnx"):
        try:
            __import__(module)
        except ImportError:
            raise BackendUnavailable(f"the {module} package is not installed (pip install 'rtsr[openvino]')") from None
    import openvino

    return openvino


def unavailable_reason(device: torch.device) -> str | None:
    """Why the OpenVINO backend cannot run for torch device `device`, or None when it can."""
    if device.type != "cpu":
        return f"OpenVINO takes frames on the CPU (device cpu), not {device.type}"
    try:
        _openvino()
    except BackendUnavailable as exc:
        return str(exc)
    return _mixed_unwinders()


class _DlInfo(ctypes.Structure):
    _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]


class _PhdrInfo(ctypes.Structure):  # the head of struct dl_phdr_info
    _fields_ = [("addr", ctypes.c_void_p), ("name", ctypes.c_char_p)]


_PHDR_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_PhdrInfo), ctypes.c_size_t, ctypes.c_void_p)


def _mixed_unwinders() -> str | None:
    """Why C++ exceptions would abort this process, or None: libstdc++ loaded (by a pip wheel,
    e.g. numpy's) while libgcc_s was the unwinder, then a library made another one global (Debian's
    libgstreamer pulls in libunwind.so.8, and PyGObject opens it RTLD_GLOBAL). Libraries loaded
    after that, OpenVINO's among them, resume unwinding in libunwind an exception that libstdc++
    raised in libgcc_s: the first exception OpenVINO throws, even one it catches itself (its
    device enumeration does), ends the process with std::terminate. Linux (glibc) only."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.dlsym.restype, libc.dlsym.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]
        libc.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
        found, info = libc.dlsym(None, b"_Unwind_RaiseException"), _DlInfo()
        if not found or not libc.dladdr(found, ctypes.byref(info)) or b"libgcc_s" in (info.fname or b""):
            return None
        loaded: list[bytes] = []  # in load order
        libc.dl_iterate_phdr(_PHDR_CALLBACK(lambda p, size, data: loaded.append(p.contents.name or b"") or 0), None)
    except (OSError, AttributeError):  # not glibc: nothing to compare
        return None
    global_unwinder = info.fname
    names = [n.rsplit(b"/", 1)[-1] for n in loaded]
    stdcxx = next((i for i, n in enumerate(names) if n.startswith(b"libstdc++")), None)
    if stdcxx is None or global_unwinder not in loaded or stdcxx > loaded.index(global_unwinder):
        return None
    return (f"this process unwinds C++ exceptions with two libraries (libstdc++ was loaded before "
            f"{global_unwinder.decode(errors='replace')} became global, as when numpy is imported before "
            f"GStreamer): the first exception inside OpenVINO would abort it")


def pick_device(available: list[str]) -> str:
    """OpenVINO's device to compile for: an Intel GPU where OpenVINO sees one, else the CPU."""
    gpus = sorted(d for d in available if d.split(".")[0] == "GPU")
    return gpus[0] if gpus else "CPU"


def ov_precision(precision: str, ov_device: str) -> str:
    """rtsr precision asked for -> OpenVINO's inference precision hint on `ov_device`."""
    if ov_device == "CPU":
        return OV_PRECISION[resolve_precision(precision, torch.device("cpu"))]
    if precision == "bf16":
        raise RtsrError(f"precision bf16 is for CPUs; OpenVINO on {ov_device} runs fp16 (auto) or fp32")
    return "f32" if precision == "fp32" else "f16"


class OpenVINOBackend:
    """Runs N x 3 x H x W float32 CPU tensors through OpenVINO; compiled per (H, W), cached on disk.

    `compiles` counts real compilations (a cache hit imports instead), for tests and logs."""

    name = "openvino"
    compiles = 0

    def __init__(self, generator: Generator, device: torch.device, precision: str = "auto",
                 ov_device: str | None = None, cache_mib: int | None = None) -> None:
        ov = _openvino()
        reason = unavailable_reason(device)
        if reason:
            raise BackendUnavailable(f"backend 'openvino' unavailable: {reason}")
        self.device, self.scale, self.dtype = device, generator.scale, torch.float32
        self._ov, self._core = ov, ov.Core()
        self.ov_device = ov_device or pick_device(self._core.available_devices)
        self._hint = ov_precision(precision, self.ov_device)
        self.precision = RTSR_PRECISION[self._hint]
        self._fp32_skip = self._hint == "bf16" and generator.config.skip == "bicubic"
        self._generator = residual_part(generator) if self._fp32_skip else generator  # what OpenVINO runs
        self._digest = model_hash(self._generator)
        self._config = {"INFERENCE_PRECISION_HINT": self._hint, "PERFORMANCE_HINT": "LATENCY"}
        if self.ov_device == "CPU":  # the thread count the user gave torch holds for OpenVINO too
            self._config["INFERENCE_NUM_THREADS"] = torch.get_num_threads()
            # unpinned: the decode and encode threads (and other programs) share these cores; pinned,
            # srgan-x4-lite 320x180 ran 0.72-0.76 fps end to end here, unpinned 0.92 (1 thread, 2 busy cores)
            self._config["ENABLE_CPU_PINNING"] = False
        self._compiled: OrderedDict[tuple[int, int], object] = OrderedDict()
        self._cache_bytes = cache_bound_bytes(cache_mib)
        self._model = None  # the ONNX model, read only when a shape must be compiled
        self.version = ov.get_version().split("-")[0]
        log.info("openvino backend on %s (%s, OpenVINO %s)", self.ov_device, self.precision, self.version)

    def cache_path(self, height: int, width: int) -> Path:
        """Where the compiled model for one input shape is kept."""
        # "_residual": the unclamped residual part, whose digest a skip-free twin model would share
        name = (f"{self._digest}_ov{key_part(self.version)}_{key_part(self.ov_device)}_{self.precision}"
                f"{'_residual' if self._fp32_skip else ''}_1x{height}x{width}.blob")
        return backend_cache_dir("openvino") / name

    def _queue_for(self, height: int, width: int):
        """The AsyncInferQueue of the model compiled (or imported) for this input shape."""
        key = (height, width)
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        path = self.cache_path(height, width)
        compiled = None
        if path.is_file():
            mark_used(path)  # before the read: the folder's trim spares what was just used
            try:
                compiled = self._core.import_model(path.read_bytes(), self.ov_device, self._config)
                log.info("openvino: imported %s", path.name)
            except FileNotFoundError:  # trimmed by another process in between: a miss
                pass
            except RuntimeError as exc:  # a blob from another build of the same version: rebuild it
                log.warning("openvino: cannot import %s (%s); compiling again", path.name, exc)
        if compiled is None:
            compiled = self._compile(height, width)
            try:
                write_cache_file(path, compiled.export_model().getvalue())
                trim_cache(path.parent, self._cache_bytes, path, ("*.blob",))
            except OSError as exc:  # runs all the same, compiled again next time
                log.warning("openvino: cannot cache %s in %s (%s)", path.name, path.parent, exc)
        actual = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "f32", "bf16", "f16"
        if actual != self._hint:  # e.g. bf16 asked of a CPU without it
            log.warning("openvino: asked for %s, %s runs %s", self._hint, self.ov_device, actual)
        self._compiled[key] = self._ov.AsyncInferQueue(compiled, JOBS)
        if len(self._compiled) > MAX_COMPILED:
            self._compiled.popitem(last=False)
        return self._compiled[key]

    def _compile(self, height: int, width: int):
        if self._model is None:
            self._model = self._core.read_model(str(cached_onnx(self._generator, self._digest,
                                                                clamp=not self._fp32_skip)))
        model = self._model.clone()
        model.reshape({0: [1, 3, height, width]})
        compiled = self._core.compile_model(model, self.ov_device, self._config)
        type(self).compiles += 1
        log.info("openvino: compiled %dx%d for %s (%s)", width, height, self.ov_device, self.precision)
        return compiled

    @torch.inference_mode()
    def run(self, x: torch.Tensor, stream: "torch.cuda.Stream | None" = None) -> torch.Tensor:
        n, _, h, w = x.shape
        queue = self._queue_for(h, w)
        out = torch.empty((n, 3, h * self.scale, w * self.scale), dtype=torch.float32)
        out_np = out.numpy()
        frames = x.detach().to(device="cpu", dtype=torch.float32)

        def done(request, index: int) -> None:  # on OpenVINO's thread: copy out while the next computes
            out_np[index] = request.get_output_tensor(0).data[0]

        queue.set_callback(done)
        for i in range(n):  # start_async waits for a free request, so at most JOBS frames are in flight
            queue.start_async({0: np.ascontiguousarray(frames[i:i + 1].numpy())}, i)
        queue.wait_all()
        if self._fp32_skip:
            out.add_(F.interpolate(frames, scale_factor=self.scale, mode="bicubic", align_corners=False)).clamp_(0, 1)
        return out
