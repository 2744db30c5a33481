"""TensorRT backend: the generator as a strongly typed FP16 engine, run on torch CUDA tensors.

Engines are cached in the user's cache folder (rtsr.locations.tensorrt_cache_dir(): by default
~/.cache/rtsr/tensorrt/, never inside the installed package), keyed by everything that makes a
plan valid: model weights hash, GPU name and compute capability, TensorRT version, precision
and shape profile.
A key that does not match is a different file, so a stale or foreign plan is never loaded.
Supports TensorRT 10.x (STRONGLY_TYPED flag) and 11.x (always strongly typed).
"""
from __future__ import annotations

import hashlib
import logging
import re
import signal
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rtsr.backends.onnx_export import INPUT, export_onnx
from rtsr.backends.torch_tensorrt_route import torch_tensorrt_plan, torch_tensorrt_unavailable_reason
from rtsr.devices import cuda_unavailable_reason
from rtsr.errors import RtsrError
from rtsr.locations import mark_used, tensorrt_cache_dir, trim_cache, write_cache_file
from rtsr.models.srgan import Generator
from rtsr.settings import cache_bound_bytes, parse_size

log = logging.getLogger(__name__)
MIN_SIDE = 16          # smallest tile side the Upscaler produces for typical frames
OPT_HW = (270, 480)    # input size TensorRT tunes kernels for (-> 1080p at x4)
MAX_CONTEXTS = 2       # execution contexts kept per engine (each holds activation memory for the profile max)


def unavailable_reason(device: torch.device) -> str | None:
    """Why the TensorRT backend cannot run on `device`, or None when it can."""
    if device.type != "cuda":
        return f"TensorRT needs a CUDA device, not {device.type}" + (
            f" ({cuda_unavailable_reason()})" if cuda_unavailable_reason() else "")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt package is not installed (pip install 'rtsr[tensorrt]')"
    except OSError as exc:  # the wheel is there but its CUDA libraries are not
        return f"tensorrt is installed but cannot load its libraries ({exc})"
    return None


@dataclass(frozen=True)
class ShapeProfile:
    """Input shapes (batch, height, width) an engine is built for: min <= opt <= max."""

    min: tuple[int, int, int]
    opt: tuple[int, int, int]
    max: tuple[int, int, int]

    def __post_init__(self) -> None:
        for i in range(3):
            if not self.min[i] <= self.opt[i] <= self.max[i]:
                raise RtsrError(f"shape profile must satisfy min <= opt <= max, got {self}")

    def covers(self, batch: int, height: int, width: int) -> bool:
        return all(lo <= v <= hi for lo, v, hi in zip(self.min, (batch, height, width), self.max))

    def contains(self, other: "ShapeProfile") -> bool:
        """Every input `other` admits is one this profile admits: both corners, batch included."""
        return self.covers(*other.min) and self.covers(*other.max)

    def tag(self) -> str:
        return "_".join("x".join(map(str, s)) for s in (self.min, self.opt, self.max))

    def nchw(self) -> tuple[tuple[int, int, int, int], ...]:
        """(min, opt, max) as RGB NCHW input shapes, the form both build routes take."""
        return tuple((n, 3, h, w) for n, h, w in (self.min, self.opt, self.max))

    @classmethod
    def for_inputs(cls, max_batch: int, max_side: int) -> "ShapeProfile":
        """Profile for everything an Upscaler may send: up to max_batch tiles of max_side,
        tuned for a batch of 480x270 frames (1080p output), the common real-time case."""
        lo = min(MIN_SIDE, max_side)
        return cls((1, lo, lo), (max_batch, min(OPT_HW[0], max_side), min(OPT_HW[1], max_side)),
                   (max_batch, max_side, max_side))

    @classmethod
    def from_sizes(cls, min_wh: str, opt_wh: str, max_wh: str, max_batch: int) -> "ShapeProfile":
        (w0, h0), (w1, h1), (w2, h2) = (parse_size(s) for s in (min_wh, opt_wh, max_wh))
        return cls((1, h0, w0), (max(1, max_batch // 2), h1, w1), (max_batch, h2, w2))


def model_hash(generator: Generator) -> str:
    """Hash of the architecture and every weight: a retrained model gets new engines."""
    h = hashlib.sha256(repr(sorted(generator.config.to_dict().items())).encode())
    for name, tensor in sorted(generator.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def engine_key(model_digest: str, gpu_name: str, capability: tuple[int, int], trt_version: str,
               precision: str, profile: ShapeProfile) -> str:
    """File name of the cached plan for exactly this combination."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-")
    return f"{model_digest}_{gpu}_sm{capability[0]}{capability[1]}_trt{trt_version}_{precision}_{profile.tag()}.plan"


def select_cached(plans: list[Path], prefix: str, *need: "int | ShapeProfile") -> Path | None:
    """Among cached plans whose key starts with `prefix` (model, GPU, TRT, precision), the one
    with the smallest max shape whose profile contains what is needed: a whole ShapeProfile (its
    min and max corners, batch included) or one (batch, height, width) input."""
    if len(need) == 1 and isinstance(need[0], ShapeProfile):
        wanted = need[0]
    else:
        point = tuple(int(v) for v in need)
        if len(point) != 3:
            raise TypeError("select_cached needs a ShapeProfile or batch, height, width")
        wanted = ShapeProfile(point, point, point)  # type: ignore[arg-type]
    best: tuple[int, Path] | None = None
    for plan in plans:
        if not plan.name.startswith(prefix):
            continue
        dims = plan.stem[len(prefix):].split("_")
        try:
            lo, opt, hi = (tuple(int(v) for v in d.split("x")) for d in dims)
            profile = ShapeProfile(lo, opt, hi)  # type: ignore[arg-type]
        except (ValueError, RtsrError):
            continue
        if profile.contains(wanted):
            volume = hi[0] * hi[1] * hi[2]
            if best is None or volume < best[0]:
                best = (volume, plan)
    return best[1] if best else None


@dataclass
class BuildProgress:
    """TensorRT's build phases (with steps) as nested progress bars; builds take minutes.

    TensorRT (10.x/11.x) reports through an IProgressMonitor that forwards here; returning False
    from step_complete is TensorRT's way to cancel a build, which `cancel` (wired to Ctrl-C during
    a build) uses so the builder stops cleanly instead of being killed mid-call.
    """

    show_bars: bool = False
    phases: dict[str, list[int]] = field(default_factory=dict)   # name -> [steps done, steps]
    cancelled: bool = False
    _bars: dict[str, object] = field(default_factory=dict)

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        self.phases[phase_name] = [0, num_steps]
        log.debug("TensorRT build phase %s (%d steps, in %s)", phase_name, num_steps, parent_phase)
        if self.show_bars:
            from tqdm import tqdm
            self._bars[phase_name] = tqdm(total=num_steps, desc=phase_name, position=len(self._bars),
                                          leave=False, unit="step", dynamic_ncols=True)

    def step_complete(self, phase_name: str, step: int) -> bool:
        if phase_name in self.phases:
            self.phases[phase_name][0] = step + 1
        bar = self._bars.get(phase_name)
        if bar is not None:
            bar.update(step + 1 - bar.n)
        return not self.cancelled

    def phase_finish(self, phase_name: str) -> None:
        self.phases.pop(phase_name, None)
        bar = self._bars.pop(phase_name, None)
        if bar is not None:
            bar.close()

    def cancel(self, *_: object) -> None:
        self.cancelled = True


def _progress_monitor(trt, progress: BuildProgress):
    """A trt.IProgressMonitor forwarding to `progress` (the base class exists only with TensorRT)."""

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            progress.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return progress.step_complete(phase_name, step)

        def phase_finish(self, phase_name: str) -> None:
            progress.phase_finish(phase_name)

    return _Monitor()


def _trt():
    import tensorrt as trt

    return trt


# build route -> the precision tag of its plans in the cache key (the two routes give different plans)
ROUTE_TAGS = {"onnx": "fp16", "torch-tensorrt": "fp16-tt"}


def build_engine(generator: Generator, device: torch.device, profile: ShapeProfile,
                 workspace_mib: int = 4096, cache_dir: Path | None = None,
                 progress: BuildProgress | None = None, route: str = "onnx", cache_mib: int | None = None) -> Path:
    """Build (or reuse) the FP16 plan for `generator` on `device`; return its path.

    Both routes give a serialized TensorRT plan with one input and one output, so the cache and
    TensorRTBackend are shared; the route is part of the key (the plans differ). `cache_dir`
    defaults to the user's cache folder, read when called (RTSR_CACHE_DIR can change it), and is
    kept under `cache_mib` (None: runtime.yaml's).
    """
    if route not in ROUTE_TAGS:
        raise RtsrError(f"unknown build route {route!r}; choose one of {', '.join(ROUTE_TAGS)}")
    reason = unavailable_reason(device) or (torch_tensorrt_unavailable_reason() if route == "torch-tensorrt" else None)
    if reason:
        raise RtsrError(f"cannot build a TensorRT engine: {reason}")
    trt = _trt()
    cache_dir = cache_dir or tensorrt_cache_dir()
    props = torch.cuda.get_device_properties(device)
    key = engine_key(model_hash(generator), props.name, (props.major, props.minor), trt.__version__,
                     ROUTE_TAGS[route], profile)
    plan_path = cache_dir / key
    prefix = key[: -len(f"{profile.tag()}.plan")]
    cached = plan_path if plan_path.is_file() else select_cached(
        sorted(cache_dir.glob(f"{prefix}*.plan")), prefix, profile)
    if cached is not None:  # a plan for this model/GPU/TensorRT whose profile contains ours, min to max
        log.info("engine cache hit: %s", cached.name)
        mark_used(cached)
        return cached
    log.info("building TensorRT engine %s by the %s route (this takes minutes)", key, route)
    if route == "torch-tensorrt":
        plan = torch_tensorrt_plan(generator, device, profile)
    else:
        timing_path = cache_dir / f"timing_{re.sub(r'[^A-Za-z0-9]+', '-', props.name)}_trt{trt.__version__}.cache"
        with torch.cuda.device(device):
            plan = _onnx_plan(trt, generator, profile, workspace_mib, timing_path, progress or BuildProgress())
    # unique temporary name, then rename: two builds of the same plan at once do not collide
    write_cache_file(plan_path, plan)
    trim_cache(cache_dir, cache_bound_bytes(cache_mib), plan_path, ("*.plan", "timing_*.cache"))
    return plan_path


def _onnx_plan(trt, generator: Generator, profile: ShapeProfile, workspace_mib: int, timing_path: Path,
               progress: BuildProgress) -> bytes:
    """The ONNX route: OnnxParser on the FP16 graph, one optimisation profile, persistent timing cache."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(export_onnx(generator, fp16=True)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RtsrError(f"TensorRT could not parse the exported model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(INPUT, *profile.nchw())
    config.add_optimization_profile(opt_profile)
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, ignore_mismatch=False)
    monitor = _progress_monitor(trt, progress)   # kept referenced for the whole build
    config.progress_monitor = monitor
    # Ctrl-C during the build asks TensorRT to stop at its next step (signals reach the main thread only)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, progress.cancel) if main else None
    try:
        plan = builder.build_serialized_network(network, config)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        for name in list(progress.phases):
            progress.phase_finish(name)
    if progress.cancelled:
        raise KeyboardInterrupt
    if plan is None:
        raise RtsrError("TensorRT failed to build the engine (see the log above)")
    write_cache_file(timing_path, bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


class ContextCache:
    """TensorRT execution contexts keyed by CUDA stream handle, at most `limit` of them.

    A context is reused whenever its stream is used again; a new stream (every video makes its
    own) takes the least recently used context's place once the work last enqueued with that
    context has finished (`fence.synchronize()`), so a multi-file run holds `limit` contexts,
    not one per video. `create` makes a context; `fence` is anything with synchronize() (a
    torch.cuda.Event recorded after the context's last enqueue).
    """

    def __init__(self, create: Callable[[], object], limit: int = MAX_CONTEXTS) -> None:
        if limit < 1:
            raise ValueError("a context cache holds at least one context")
        self._create, self.limit = create, limit
        self._entries: OrderedDict[int, list] = OrderedDict()  # handle -> [context, fence of its last run]
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, handle: int):
        with self._lock:
            entry = self._entries.get(handle)
            if entry is None:
                while len(self._entries) >= self.limit:
                    self._drop(self._entries.popitem(last=False)[1])
                context = self._create()
                if context is None:
                    raise RtsrError("TensorRT could not create an execution context (out of GPU memory?)")
                entry = self._entries[handle] = [context, None]
            self._entries.move_to_end(handle)
            return entry[0]

    def ran(self, handle: int, fence: object) -> None:
        """Record the fence of the work just enqueued with `handle`'s context."""
        with self._lock:
            entry = self._entries.get(handle)
            if entry is not None:
                entry[1] = fence

    def clear(self) -> None:
        """Free every context once its last enqueued work has finished."""
        with self._lock:
            while self._entries:
                self._drop(self._entries.popitem(last=False)[1])

    @staticmethod
    def _drop(entry: list) -> None:
        if entry[1] is not None:
            entry[1].synchronize()  # a context must outlive the work enqueued with it
        entry.clear()


class TensorRTBackend:
    """Runs a cached FP16 plan with execute_async_v3 on torch CUDA tensors: no host round trip.

    The input shapes it accepts are the loaded plan's profile (read from the plan, not the one
    asked for: a cached plan may be larger). Not thread-safe: one caller thread per backend.
    """

    name = "tensorrt"

    def __init__(self, generator: Generator, device: torch.device, profile: ShapeProfile,
                 route: str = "onnx", cache_mib: int | None = None) -> None:
        trt = _trt()
        plan = build_engine(generator, device, profile, route=route, cache_mib=cache_mib)
        # deserialize on the device asked for: TensorRT loads the plan onto the current device
        with torch.cuda.device(device):
            self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            engine = self._runtime.deserialize_cuda_engine(plan.read_bytes())
        if engine is None:
            raise RtsrError(f"TensorRT could not load {plan.name}; delete it to rebuild")
        self._attach(trt, engine, device, generator.scale, plan)

    def _attach(self, trt, engine, device: torch.device, scale: int, plan_path: Path) -> None:
        """Everything read from a loaded plan: its input/output tensor names and its profile."""
        self.device, self.scale, self.dtype = device, scale, torch.float16
        self.plan_path, self.engine = plan_path, engine
        # names differ between the build routes (ONNX names vs torch-tensorrt's); read them from the plan
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise RtsrError(f"{plan_path.name} has inputs {inputs} and outputs {outputs}; rtsr needs one of each")
        self._input, self._output = inputs[0], outputs[0]
        lo, opt, hi = (tuple(d) for d in self.engine.get_tensor_profile_shape(self._input, 0))
        self.profile = ShapeProfile(*((s[0], s[2], s[3]) for s in (lo, opt, hi)))  # NCHW -> (N, H, W)
        # what each execution context allocates: activations for the profile's largest input
        self.device_memory = int(self.engine.device_memory_size_v2)
        log.info("TensorRT plan %s: profile %s, %.2f GiB device memory per context (up to %d contexts)",
                 plan_path.name, self.profile, self.device_memory / 2**30, MAX_CONTEXTS)
        self._contexts = ContextCache(self.engine.create_execution_context)

    def _enqueue(self, ctx, x: torch.Tensor, y: torch.Tensor, stream_handle: int) -> None:
        """Bind x as the plan's input and y as its output on `ctx` and enqueue on `stream_handle`."""
        shape = tuple(x.shape)
        if not ctx.set_input_shape(self._input, shape):
            raise RtsrError(f"TensorRT refused input shape {shape} for tensor {self._input!r}: outside the "
                            f"profile of {self.plan_path.name} ({self.profile})")
        out_shape = tuple(ctx.get_tensor_shape(self._output))
        if out_shape != tuple(y.shape):
            raise RtsrError(f"TensorRT gives output {out_shape} for input {shape}, expected {tuple(y.shape)}")
        ctx.set_tensor_address(self._input, x.data_ptr())
        ctx.set_tensor_address(self._output, y.data_ptr())
        if not ctx.execute_async_v3(stream_handle):
            raise RtsrError("TensorRT execution failed")

    def run(self, x: torch.Tensor, stream: "torch.cuda.Stream | None" = None) -> torch.Tensor:
        n, _, h, w = x.shape
        if not self.profile.covers(n, h, w):
            # the Upscaler tiles frames to its tile size; a caller that did not is told how
            raise RtsrError(f"input {n}x{h}x{w} is outside the engine profile {self.profile}; "
                            f"lower --tile or --batch, or rebuild with a larger --max")
        with torch.cuda.device(self.device):
            stream = stream or torch.cuda.current_stream(self.device)
            with torch.cuda.stream(stream):  # allocate on the stream TensorRT runs on (allocator order)
                x = x.to(device=self.device, dtype=torch.float16).contiguous()
                y = torch.empty((n, 3, h * self.scale, w * self.scale), device=self.device, dtype=torch.float16)
                ctx = self._contexts.get(stream.cuda_stream)
                self._enqueue(ctx, x, y, stream.cuda_stream)
                done = torch.cuda.Event()
                done.record(stream)
                self._contexts.ran(stream.cuda_stream, done)
        return y

    def close(self) -> None:
        """Free the execution contexts (after their work has finished); run() makes new ones."""
        self._contexts.clear()
