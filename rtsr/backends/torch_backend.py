"""PyTorch backend: the BN-folded generator in eager mode, on the CPU or a CUDA GPU.

On CUDA it runs fp16 (or fp32 when asked) and replays a CUDA graph per input shape, so a frame
costs one graph launch instead of a few hundred kernel launches from Python. On the CPU it runs
fp32, or bf16 under autocast where the CPU has native bf16 (rtsr.devices.resolve_precision).
"""
from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict

import torch

from rtsr.devices import resolve_precision
from rtsr.models.srgan import Generator, fold_batchnorm

log = logging.getLogger(__name__)
MAX_GRAPHS = 8  # shapes kept captured; a video uses a handful (whole frames and edge tiles)


class TorchBackend:
    """Runs the generator with BatchNorm folded, channels_last, in inference mode; fp16 and
    CUDA graphs on CUDA; bf16 autocast on the CPU when `precision` is "bf16" (input and output
    stay float32: `dtype` is what run() takes).

    Not thread-safe on CUDA: each captured graph replays into one static input and output buffer
    shared by every caller, so two threads running the same shape at once overwrite each other."""

    name = "torch"

    def __init__(self, generator: Generator, device: torch.device, cuda_graphs: bool = True,
                 precision: str = "auto") -> None:
        self.device = device
        self.scale = generator.scale
        cuda = device.type == "cuda"
        self.precision = resolve_precision(precision, device)  # "fp32", "bf16" (CPU) or "fp16" (CUDA)
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        # bf16: weights stay fp32 and oneDNN's convolutions run bf16; output back to float32
        self._autocast = self.precision == "bf16"
        # NHWC suits cuDNN's tensor-core kernels and oneDNN's CPU convolutions alike
        # (measured here on 2 CPU cores: 1.35x faster than NCHW for srgan-x4-lite at 320x180)
        self.memory_format = torch.channels_last
        self.model = fold_batchnorm(generator).to(device=device, dtype=self.dtype, memory_format=self.memory_format)
        self.cuda_graphs = cuda and cuda_graphs
        self._graphs: OrderedDict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = OrderedDict()
        log.info("torch backend on %s (%s%s)", device, self.precision, ", CUDA graphs" if self.cuda_graphs else "")

    @torch.inference_mode()
    def run(self, x: torch.Tensor, stream: "torch.cuda.Stream | None" = None) -> torch.Tensor:
        ctx = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
        with ctx:
            x = x.to(dtype=self.dtype, memory_format=self.memory_format)
            if self._autocast:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    y = self.model(x)
                return y.float().clamp_(0, 1)
            if not self.cuda_graphs:
                return self.model(x).clamp_(0, 1)
            graph, static_in, static_out = self._graph_for(x)
            static_in.copy_(x)
            graph.replay()
            return static_out.clone()  # the static buffer is overwritten by the next replay

    def _graph_for(self, x: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        key = tuple(x.shape)
        if key in self._graphs:
            self._graphs.move_to_end(key)
            return self._graphs[key]
        static_in = torch.empty_like(x, memory_format=self.memory_format)
        static_in.copy_(x)
        warmup = torch.cuda.Stream(self.device)
        warmup.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(warmup):  # cuDNN picks its kernels before capture
            for _ in range(2):
                self.model(static_in)
        torch.cuda.current_stream(self.device).wait_stream(warmup)
        graph = torch.cuda.CUDAGraph()
        # thread_local: a capture can start mid-run (a new shape, the last partial batch) while the
        # reader and writer threads use CUDA (event waits); "global" mode would fail the capture on
        # their calls (pytorch#104487)
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_out = self.model(static_in).clamp_(0, 1)
        self._graphs[key] = (graph, static_in, static_out)
        if len(self._graphs) > MAX_GRAPHS:
            self._graphs.popitem(last=False)
        log.info("captured a CUDA graph for input %s", key)
        return self._graphs[key]
