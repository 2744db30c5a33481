"""Picking the torch device and the precision it runs, with user-readable errors when the one
asked for is absent."""
from __future__ import annotations

import logging

import torch

from rtsr.errors import RtsrError

log = logging.getLogger(__name__)


def cuda_unavailable_reason() -> str | None:
    """Why CUDA cannot be used here, or None when it can."""
    if torch.version.cuda is None:
        return f"this PyTorch build ({torch.__version__}) has no CUDA support"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible (driver missing or CUDA_VISIBLE_DEVICES empty)"
    return None


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None -> the first GPU if there is one, else the CPU; 'cuda[:N]' must exist."""
    if device is None:
        return torch.device("cuda" if cuda_unavailable_reason() is None else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise RtsrError(f"unknown device '{device}' (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        reason = cuda_unavailable_reason()
        if reason:
            raise RtsrError(f"device '{device}' asked for, but {reason}")
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise RtsrError(f"device '{device}' asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
        return torch.device("cuda", index)
    if dev.type != "cpu":
        raise RtsrError(f"unsupported device '{device}' (use cpu, cuda or cuda:N)")
    return dev


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 CPU flags whose bf16 matmul/conv units oneDNN uses


def cpu_flags() -> set[str] | None:
    """This CPU's feature flags as Linux lists them in /proc/cpuinfo, or None where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return None


def native_bf16() -> tuple[bool, str]:
    """(whether this CPU computes bf16 natively, what was detected), from the CPU's flags."""
    flags = cpu_flags()
    capability = torch.backends.cpu.get_cpu_capability()
    if flags is None:
        return False, f"CPU flags unreadable (no /proc/cpuinfo flags line), torch capability {capability}"
    found = [f for f in NATIVE_BF16_FLAGS if f in flags]
    if found:
        return True, f"{' and '.join(found)} in /proc/cpuinfo, torch capability {capability}"
    return False, f"no {' or '.join(NATIVE_BF16_FLAGS)} in /proc/cpuinfo, torch capability {capability}"


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' | 'fp32' | 'bf16' | 'fp16' asked for on `device` -> what the torch backend runs.

    auto: fp16 on CUDA; on the CPU bf16 where it is native (see native_bf16), else fp32.
    fp16 is refused on the CPU and bf16 on CUDA. bf16 asked for on a CPU without native bf16
    runs (oneDNN converts around fp32 arithmetic: same results, often slower than fp32) with a
    warning, so that bf16 output can be checked on any machine."""
    if precision not in PRECISIONS:
        raise RtsrError(f"unknown precision '{precision}' (choose {', '.join(PRECISIONS)})")
    if device.type == "cuda":
        if precision == "bf16":
            raise RtsrError("precision bf16 is for CPUs; on CUDA use fp16 (the default, auto) or fp32")
        return "fp32" if precision == "fp32" else "fp16"
    if precision == "fp16":
        raise RtsrError("precision fp16 needs a CUDA GPU; on the CPU use auto, bf16 or fp32")
    native, why = native_bf16()
    if precision == "auto":
        chosen = "bf16" if native else "fp32"
        log.info("precision auto -> %s on the CPU (%s)", chosen, why)
        return chosen
    if precision == "bf16" and not native:
        log.warning("precision bf16 asked for on a CPU without native bf16 (%s): emulated, likely slower than fp32",
                    why)
    return precision
