"""`backend="auto"`: the backend picked by measurement on this machine, once, then cached.

On first use per machine, model, precision and package versions, every backend that can run here
is timed on one small frame cut from a real photo (rtsr/data/probe.png, package data: the
512x288 centre of samples/photo.png, scikit-image's CC0 `coffee`, so a wheel probes what a
checkout does; downscaled x scale), and the fastest whose output scores within QUALITY_DB dB
PSNR-Y of fp32 torch's (against the photo itself) is chosen. The choice, the timings and the
reason go to the log and to a JSON file in the user cache folder (`auto/`), which later runs and
`rtsr info` read; a new version of any backend package or another machine is a new key, so it is
measured again.

Not timed: TensorRT, whose plans take minutes to build (where it can run it is chosen, as
before), and software Vulkan devices (lavapipe: the CPU already runs the CPU backends).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata, resources
from pathlib import Path

import cv2
import numpy as np
import torch

from rtsr.devices import resolve_precision
from rtsr.errors import RtsrError
from rtsr.locations import cache_dir, write_cache_file
from rtsr.models.srgan import Generator
from rtsr.quality import downscale_image, psnr_y

log = logging.getLogger(__name__)
PHOTO = resources.files("rtsr") / "data" / "probe.png"  # 512x288: the probe's crop up to x4
# low-resolution probe frame: big enough that per-call overhead does not decide (at 48x32 torch
# beat OpenVINO, which won at 128x72 and 320x180), small enough for a few seconds in all
PROBE_WH = (128, 72)
ROUNDS = 3            # timed calls of each backend, in turn, after one untimed warm-up (compiles, converts)
QUALITY_DB = 0.05     # PSNR-Y a candidate may lose against fp32 torch
VERSIONED = ("torch", "openvino", "ncnn", "pnnx", "tensorrt", "tensorrt-cu12", "onnx")


@dataclass
class Measurement:
    seconds: float             # best of ROUNDS calls on the probe frame
    psnr_y: float | None       # of its output against the photo; None where a Measure gave none
    precision: str


@dataclass
class Choice:
    backend: str
    why: str
    measured: dict[str, Measurement] = field(default_factory=dict)
    reference_psnr_y: float | None = None  # fp32 torch's
    date: str = ""


# (backends, precision, rounds, {backend: why it failed} to fill) -> {backend: its measurement}
Measure = Callable[[list[str], str, int, dict[str, str]], dict[str, Measurement]]


def machine() -> dict[str, str]:
    """What makes timings of this machine differ from another's."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpu = next((line.partition(":")[2].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"arch": platform.machine(), "cpu": cpu, "cores": str(os.cpu_count()), "threads": str(torch.get_num_threads())}
    if torch.cuda.is_available():
        info["gpus"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return info


def versions() -> dict[str, str]:
    from rtsr import __version__

    found = {"rtsr": __version__}
    for dist in VERSIONED:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "-"
    return found


def cache_path(digest: str, device: torch.device, precision: str) -> Path:
    """The cached choice for this machine, package versions, model, device and resolved precision."""
    resolved = resolve_precision(precision, device)
    text = json.dumps([machine(), versions(), digest, str(device), resolved], sort_keys=True)
    return cache_dir() / "auto" / f"{digest}_{str(device).replace(':', '')}_{resolved}_{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"


def candidates(device: torch.device, precision: str) -> tuple[list[str], dict[str, str]]:
    """(backends worth timing here, {backend: why not} for the rest)."""
    from rtsr.backends import BACKENDS, precision_reason, unavailable_reason

    ready, skipped = [], {}
    for name in BACKENDS:
        reason = unavailable_reason(name, device) or precision_reason(name, precision)
        if reason is None and name == "vulkan":
            from rtsr.backends.vulkan_backend import default_index, device_label, is_software

            if is_software(default_index()):
                reason = f"software Vulkan device ({device_label(default_index())}): used only when asked for"
        if reason is None:
            ready.append(name)
        else:
            skipped[name] = reason
    return ready, skipped


def probe(scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(low-resolution RGB probe frame, the centre of the photo it came from)."""
    w, h = PROBE_WH
    try:  # bytes, not a path: found wherever the package is, even in a zip
        photo = cv2.imdecode(np.frombuffer(PHOTO.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    except OSError as exc:
        raise RtsrError(f"rtsr's probe image is missing ({exc}): reinstall rtsr") from None
    photo = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)
    if photo.shape[0] < h * scale or photo.shape[1] < w * scale:
        raise RtsrError(f"backend auto probes models up to x{photo.shape[1] // w}, not x{scale}: choose a backend")
    y0, x0 = (photo.shape[0] - h * scale) // 2, (photo.shape[1] - w * scale) // 2
    hr = np.ascontiguousarray(photo[y0:y0 + h * scale, x0:x0 + w * scale])
    return downscale_image(hr, scale), hr


def real_measure(generator: Generator, device: torch.device) -> Measure:
    """Time backends on the probe frame, call by call in turn (load that comes and goes on a shared
    machine falls on all alike), best of `rounds` calls after one warm-up, and score their output."""
    from rtsr.backends import create_backend

    lr, hr = probe(generator.scale)

    def measure(names: list[str], precision: str, rounds: int, failed: dict[str, str]) -> dict[str, Measurement]:
        trials: dict[str, tuple[object, torch.Tensor, list]] = {}
        for name in names:
            try:
                backend = create_backend(name, generator, device, precision=precision)
                x = (torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255).to(device, backend.dtype)
                trials[name] = (backend, x, [backend.run(x)])  # warm-up: compiles, converts, captures
            except Exception as exc:  # noqa: BLE001  a backend that fails its trial is not chosen; the log says why
                failed[name] = f"failed its trial ({type(exc).__name__}: {exc})"
        seconds: dict[str, list[float]] = {name: [] for name in trials}
        for _ in range(rounds):
            for name, (backend, x, out) in trials.items():
                _sync(device)
                t0 = time.perf_counter()
                out[0] = backend.run(x)
                _sync(device)
                seconds[name].append(time.perf_counter() - t0)
        result = {}
        for name, (backend, _, out) in trials.items():
            img = (out[0][0].float().clamp(0, 1).permute(1, 2, 0) * 255).round().byte().cpu().numpy()
            score = psnr_y(hr, img, border=generator.scale)
            result[name] = Measurement(min(seconds[name], default=float("nan")), score,
                                       getattr(backend, "precision", precision))
        return result

    return measure


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decide(measured: dict[str, Measurement], reference: float | None, skipped: dict[str, str]) -> Choice:
    """The fastest measured backend whose PSNR-Y is within QUALITY_DB of `reference` (fp32 torch's)."""
    good = {n: m for n, m in measured.items()
            if reference is None or m.psnr_y is None or m.psnr_y >= reference - QUALITY_DB}
    if not good:  # even torch at this precision lost more: keep what the user asked for, logged below
        good = {n: m for n, m in measured.items() if n == "torch"} or measured
    best = min(good, key=lambda n: good[n].seconds)
    times = ", ".join(f"{n} ({m.precision}) {1000 * m.seconds:.1f} ms" for n, m in
                      sorted(measured.items(), key=lambda kv: kv[1].seconds))
    parts = [f"fastest on a {PROBE_WH[0]}x{PROBE_WH[1]} frame: {times}"]
    if reference is not None:
        lost = [f"{n} lost {reference - m.psnr_y:.3f} dB" for n, m in measured.items()
                if n not in good and m.psnr_y is not None]
        parts.append(f"PSNR-Y within {QUALITY_DB} dB of fp32 torch's {reference:.2f} dB"
                     + (f" (rejected: {', '.join(lost)})" if lost else ""))
    else:
        parts.append("quality not checked (no PSNR-Y measured)")
    parts += [f"{n} not timed: {why}" for n, why in skipped.items()]
    return Choice(best, "; ".join(parts), measured, reference)


def load_cached(path: Path) -> Choice | None:
    try:
        data = json.loads(path.read_text())
        data["measured"] = {n: Measurement(**m) for n, m in data["measured"].items()}
        return Choice(**data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def choose(generator: Generator, device: torch.device, precision: str = "auto",
           measure: Measure | None = None) -> Choice:
    """The backend `auto` runs for `generator` on `device` at `precision`: cached, else measured."""
    from rtsr.backends.tensorrt import model_hash

    path = cache_path(model_hash(generator), device, precision)
    cached = load_cached(path)
    if cached is not None:
        log.info("backend auto -> %s (measured %s, cached in %s): %s", cached.backend, cached.date, path, cached.why)
        return cached
    ready, skipped = candidates(device, precision)
    if "tensorrt" in ready:
        return _told(Choice("tensorrt", "TensorRT can run here; its plans take minutes to build, so it is not timed"))
    if len(ready) == 1:
        others = "; ".join(f"{n}: {why}" for n, why in skipped.items())
        return _told(Choice(ready[0], f"the only backend that can run here ({others})"))
    measure = measure or real_measure(generator, device)
    start = time.perf_counter()
    measured = measure(ready, precision, ROUNDS, skipped)
    if not measured:
        return _told(Choice("torch", "every trial failed: " + "; ".join(f"{n}: {why}" for n, why in skipped.items())))
    fp32 = measured.get("torch") if precision == "fp32" else None
    reference = (fp32 or measure(["torch"], "fp32", 0, skipped)["torch"]).psnr_y  # its output only: not timed
    choice = decide(measured, reference, skipped)
    choice.date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    try:
        write_cache_file(path, json.dumps(asdict(choice), indent=1).encode())
        log.info("backend auto measured in %.1f s (cached in %s)", time.perf_counter() - start, path)
    except OSError as exc:  # an unwritable cache: the choice holds for this run, measured again next time
        log.warning("backend auto measured in %.1f s, but cannot cache it in %s (%s)",
                    time.perf_counter() - start, path.parent, exc)
    return _told(choice)


def _told(choice: Choice) -> Choice:
    log.info("backend auto -> %s: %s", choice.backend, choice.why)
    return choice


def summary(generator: Generator, device: torch.device, precision: str = "auto") -> str:
    """What `auto` runs (or will measure) for `generator` here, for `rtsr info`; measures nothing."""
    from rtsr.backends.tensorrt import model_hash

    cached = load_cached(cache_path(model_hash(generator), device, precision))
    if cached is not None:
        return f"{cached.backend} (measured {cached.date}: {cached.why})"
    ready, skipped = candidates(device, precision)
    if "tensorrt" in ready or len(ready) == 1:
        return f"{'tensorrt' if 'tensorrt' in ready else ready[0]} (nothing else to time here)"
    return f"not measured on this machine yet: {', '.join(ready)} are timed on first use (seconds)"
