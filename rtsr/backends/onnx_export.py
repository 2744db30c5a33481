"""Generator -> ONNX with dynamic batch/height/width, the input of the TensorRT build.

TensorRT 11 networks are strongly typed (BuilderFlag.FP16 is gone), so an FP16 engine needs an
FP16 graph: the BN-folded generator is cast with `.half()` before export.
"""
from __future__ import annotations

import io
import warnings

import torch

from rtsr.models.srgan import Generator, fold_batchnorm

INPUT, OUTPUT = "input", "output"
OPSET = 17


def export_onnx(generator: Generator, fp16: bool, clamp: bool = True) -> bytes:
    """Serialized ONNX model of the BN-folded generator, NCHW in [0, 1], output clamped unless
    `clamp` is False (a residual part, whose skip and clamp the backend adds: srgan.residual_part)."""
    folded = fold_batchnorm(generator).cpu()
    model = ClampedGenerator(folded) if clamp else folded
    dtype = torch.float16 if fp16 else torch.float32
    model = model.to(dtype)
    sample = torch.rand(1, 3, 32, 32, dtype=dtype)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: stable for convs
        torch.onnx.export(
            model, (sample,), buf, dynamo=False, opset_version=OPSET,
            input_names=[INPUT], output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch", 2: "height", 3: "width"},
                          OUTPUT: {0: "batch", 2: "out_height", 3: "out_width"}},
        )
    return buf.getvalue()


class ClampedGenerator(torch.nn.Module):
    """The clamp the torch backend applies, inside the graph so every backend returns [0, 1]."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(x).clamp(0, 1)
