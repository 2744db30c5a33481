"""What this machine can run: versions, devices, and each backend's availability with its reason."""
from __future__ import annotations

import platform
from importlib import metadata

import torch

from rtsr import devices
from rtsr.backends import BACKENDS, unavailable_reason
from rtsr.backends.torch_tensorrt_route import torch_tensorrt_unavailable_reason
from rtsr.devices import cuda_unavailable_reason, resolve_device
from rtsr.locations import cache_dir_and_reason, tensorrt_cache_dir, weights_dir


def package_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def collect_info() -> dict[str, str]:
    from rtsr import __version__

    cuda_reason = cuda_unavailable_reason()
    info = {
        "rtsr": __version__,
        "python": platform.python_version(),
        "torch": f"{torch.__version__} (CUDA {torch.version.cuda or 'none'})",
        "av (PyAV)": package_version("av"),
        "opencv": package_version("opencv-python") if package_version("opencv-python") != "not installed"
        else package_version("opencv-python-headless"),
        "tensorrt": package_version("tensorrt") if package_version("tensorrt") != "not installed" else package_version("tensorrt-cu12"),
        "onnxruntime": package_version("onnxruntime"),
        "cpu": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "cpu precision": cpu_precision(),
        "cuda": "available" if cuda_reason is None else f"unavailable: {cuda_reason}",
    }
    if cuda_reason is None:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info[f"gpu {i}"] = f"{p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB"
    device = resolve_device(None)
    for name in BACKENDS:
        reason = unavailable_reason(name, device)
        info[f"backend {name}"] = f"ready on {device}{backend_detail(name)}" if reason is None else f"unavailable: {reason}"
    info["backend auto"] = auto_choice(device)
    tt_reason = unavailable_reason("tensorrt", device) or torch_tensorrt_unavailable_reason()
    info["route torch-tensorrt"] = "ready" if tt_reason is None else f"unavailable: {tt_reason}"
    info.update(locations())
    return info


def backend_detail(name: str) -> str:
    """Which device a ready backend would run on, where that is not the torch device."""
    if name == "vulkan":
        from rtsr.backends.vulkan_backend import default_index, device_label, is_software

        index = default_index()
        return (f", Vulkan device {index}: {device_label(index)}"
                + (" (correct on software Vulkan, speed unmeasured)" if is_software(index) else ""))
    if name == "openvino":
        import openvino

        return f", OpenVINO devices {', '.join(openvino.Core().available_devices)}"
    return ""


def auto_choice(device: torch.device) -> str:
    """What backend="auto" runs for the default model here: the cached measurement, or what will be timed."""
    from rtsr.backends.autoselect import summary
    from rtsr.models.weights import load_weights, resolve_model
    from rtsr.settings import load_settings

    generator, card = load_weights(resolve_model(load_settings().model))
    return f"{card.name}: {summary(generator, device)}"


def cpu_precision() -> str:
    """What --precision auto runs on this CPU, and the detection it follows."""
    native, why = devices.native_bf16()
    if native:
        return f"auto -> bf16, native ({why})"
    return f"auto -> fp32 ({why}; bf16 only when asked, emulated)"


def locations() -> dict[str, str]:
    """Where models are read and what rtsr builds is written (rtsr.locations)."""
    cache, reason = cache_dir_and_reason()
    rule = {"RTSR_CACHE_DIR": "from RTSR_CACHE_DIR", "XDG_CACHE_HOME": "from XDG_CACHE_HOME",
            "default": "default; set RTSR_CACHE_DIR to move it"}[reason]
    return {
        "models (read)": f"{weights_dir()} (shipped with rtsr; --model also takes a .pt path)",
        "cache (written)": f"{cache} ({rule}{'' if cache.is_dir() else '; created when first needed'})",
        "tensorrt plans": f"{tensorrt_cache_dir()} (built TensorRT plans and timing caches)",
    }
