"""Picking the torch device, with user-readable errors when the one asked for is absent."""
from __future__ import annotations

import torch

from rtsr.errors import RtsrError


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
