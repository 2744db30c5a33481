"""Backends behind one interface, and the choice among them (`auto`)."""
from __future__ import annotations

import torch

from rtsr.backends.base import Backend, BackendUnavailable
from rtsr.backends.torch_backend import TorchBackend
from rtsr.models.srgan import Generator

BACKENDS = ("tensorrt", "torch", "openvino", "vulkan")  # "auto" measures them (rtsr.backends.autoselect)
ALIASES = {"trt": "tensorrt"}


def vulkan_index(name: str) -> int | None:
    """N of 'vulkan:N' (a Vulkan device by index), None for plain 'vulkan'."""
    tail = name.partition(":")[2]
    if not tail.isdigit():
        return None
    return int(tail)


def canonical(name: str) -> str:
    """'trt' -> 'tensorrt', 'vulkan:1' -> 'vulkan'; other names unchanged."""
    name = ALIASES.get(name, name)
    return "vulkan" if name.startswith("vulkan:") and vulkan_index(name) is not None else name


def unavailable_reason(name: str, device: torch.device) -> str | None:
    """Why backend `name` cannot run on `device` here, or None when it can."""
    index, name = vulkan_index(name), canonical(name)
    if name == "torch":
        return None
    if name == "tensorrt":
        from rtsr.backends import tensorrt

        return tensorrt.unavailable_reason(device)
    if name == "openvino":
        from rtsr.backends import openvino_backend

        return openvino_backend.unavailable_reason(device)
    if name == "vulkan":
        from rtsr.backends import vulkan_backend

        return vulkan_backend.unavailable_reason(device, index)
    return f"unknown backend '{name}' (choose auto, {', '.join(BACKENDS)}, vulkan:N)"


def precision_reason(name: str, precision: str) -> str | None:
    """Why backend `name` cannot run `precision`, or None when it can (TensorRT plans are fp16;
    ncnn's Vulkan path stores fp16 or fp32)."""
    name = canonical(name)
    if name == "tensorrt" and precision not in ("auto", "fp16"):
        return f"TensorRT plans are built fp16 only, not {precision}"
    if name == "vulkan" and precision == "bf16":
        return "the Vulkan backend runs fp16 storage (auto) or fp32, not bf16"
    return None


def create_backend(name: str, generator: Generator, device: torch.device, max_batch: int = 1,
                   max_side: int = 1024, precision: str = "auto", cache_mib: int | None = None) -> Backend:
    """Build backend `name` ('auto' picks the fastest available) for `generator` on `device`,
    for inputs of at most `max_batch` x `max_side` x `max_side` (what TensorRT builds for), at
    `precision` ('auto', 'fp32', 'bf16', 'fp16'; see rtsr.devices.resolve_precision). `cache_mib`
    bounds the compiled-model cache of OpenVINO and TensorRT (None: runtime.yaml's)."""
    requested = ALIASES.get(name, name)  # may name a Vulkan device: 'vulkan:1'
    name = canonical(requested)
    if name == "auto":  # measured once per machine, model and versions, then cached (autoselect)
        from rtsr.backends.autoselect import choose

        name = requested = choose(generator, device, precision).backend
    reason = unavailable_reason(requested, device) or precision_reason(name, precision)
    if reason is not None:
        raise BackendUnavailable(f"backend '{name}' unavailable: {reason}")
    if name == "torch":
        return TorchBackend(generator, device, precision=precision)
    if name == "openvino":
        from rtsr.backends.openvino_backend import OpenVINOBackend

        return OpenVINOBackend(generator, device, precision=precision, cache_mib=cache_mib)
    if name == "vulkan":
        from rtsr.backends.vulkan_backend import VulkanBackend

        return VulkanBackend(generator, device, precision=precision, index=vulkan_index(requested))
    from rtsr.backends.tensorrt import ShapeProfile, TensorRTBackend

    return TensorRTBackend(generator, device, ShapeProfile.for_inputs(max_batch, max_side), cache_mib=cache_mib)


__all__ = ["ALIASES", "BACKENDS", "Backend", "BackendUnavailable", "create_backend", "precision_reason",
           "unavailable_reason"]
