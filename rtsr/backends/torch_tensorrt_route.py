"""The second TensorRT build route: torch.export + torch-tensorrt, giving the same kind of plan.

torch-tensorrt pins one torch minor and one TensorRT minor (2.14.0: torch 2.14 + TensorRT 11.1),
so the route is offered only where the installed torch matches. Its dynamo path ignores
`enabled_precisions`; the module is cast to half instead, as the ONNX route does.
"""
from __future__ import annotations

import torch

from rtsr.backends.onnx_export import ClampedGenerator
from rtsr.models.srgan import Generator, fold_batchnorm


def _minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


def version_mismatch(torch_tensorrt_version: str, torch_version: str) -> str | None:
    """Why this torch-tensorrt cannot run with this torch, or None where both are one minor."""
    if _minor(torch_tensorrt_version) != _minor(torch_version):
        return (f"torch-tensorrt {torch_tensorrt_version} is built for torch {_minor(torch_tensorrt_version)}, "
                f"this is torch {torch_version}")
    return None


def torch_tensorrt_unavailable_reason() -> str | None:
    """None where the torch-tensorrt route can run, else the reason in one line."""
    try:
        import torch_tensorrt
    except Exception as exc:  # absent, or present but built against other CUDA/TensorRT libraries
        return (f"torch-tensorrt is not importable ({type(exc).__name__}); "
                f"pip install 'torch-tensorrt=={_minor(torch.__version__)}.*'")
    return version_mismatch(torch_tensorrt.__version__, torch.__version__)


def export_program(generator: Generator, device: torch.device, profile,
                   dtype: torch.dtype = torch.float16) -> torch.export.ExportedProgram:
    """The BN-folded, clamped generator as a torch.export program, dynamic over `profile`'s shapes
    (runs on any device, so the export is tested on CPU)."""
    model = ClampedGenerator(fold_batchnorm(generator)).to(device=device, dtype=dtype).eval()
    lo, opt, hi = profile.nchw()
    # dims whose min == max stay static; export specialises sizes 0/1, so the sample uses the max batch
    dims = {axis: torch.export.Dim(name, min=lo[axis], max=hi[axis])
            for axis, name in ((0, "batch"), (2, "height"), (3, "width")) if lo[axis] < hi[axis]}
    sample = torch.rand(hi[0], 3, *opt[2:], device=device, dtype=dtype)
    with torch.no_grad():
        return torch.export.export(model, (sample,), dynamic_shapes=(dims,))


def torch_tensorrt_plan(generator: Generator, device: torch.device, profile) -> bytes:
    """Serialized FP16 TensorRT plan of the exported generator for `profile`'s shapes."""
    import torch_tensorrt

    lo, opt, hi = profile.nchw()
    spec = torch_tensorrt.Input(min_shape=lo, opt_shape=opt, max_shape=hi, dtype=torch.float16)
    plan = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine(
        export_program(generator, device, profile), arg_inputs=[spec], use_explicit_typing=True)
    return bytes(plan)
