"""The TensorRT backend's binding step, context cache, plan profile and device, driven on the CPU.

No GPU and no TensorRT here: a stand-in engine and execution context with TensorRT's semantics
(set_input_shape(name, shape) -> bool, set_tensor_address(name, ptr), get_tensor_shape(name),
execute_async_v3(stream)) record what the backend asks, and the binding step is driven with CPU
tensors' data_ptr. That the same calls exist in NVIDIA's bindings is tests/test_tensorrt_api.py's
job; that they compute the right thing on a GPU is tests/test_gpu.py's.
"""
from __future__ import annotations

import contextlib
import enum
import logging
import os
import sys
import time
import types
from pathlib import Path

import pytest
import torch

import rtsr.backends.tensorrt as trt_backend
from rtsr.backends.tensorrt import ContextCache, ShapeProfile, TensorRTBackend, select_cached
from rtsr.errors import RtsrError

SCALE = 4
PLAN_PROFILE = ((1, 3, 16, 16), (4, 3, 270, 480), (8, 3, 1040, 1040))  # NCHW min, opt, max


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


FAKE_TRT = types.SimpleNamespace(TensorIOMode=TensorIOMode)


class FakeContext:
    """IExecutionContext as far as rtsr uses it, strict the way TensorRT is."""

    def __init__(self, engine: "FakeEngine") -> None:
        self.engine = engine
        self.calls: list[tuple] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.calls.append(("set_input_shape", name, shape))
        if not isinstance(name, str) or not isinstance(shape, tuple):  # pybind11 refuses other types
            raise TypeError(f"set_input_shape(name: str, shape: Dims), got ({name!r}, {shape!r})")
        if self.engine.modes.get(name) != TensorIOMode.INPUT:
            return False  # TensorRT logs "not an input tensor" and returns False
        lo, _, hi = self.engine.profile
        if len(shape) != 4 or not all(a <= v <= b for a, v, b in zip(lo, shape, hi)):
            return False
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if self.engine.modes.get(name) == TensorIOMode.INPUT:
            return self.shapes.get(name, (-1, 3, -1, -1))
        (shape,) = self.shapes.values() or [(-1, 3, -1, -1)]
        n, c, h, w = shape
        return (n, c, h * SCALE, w * SCALE) if h > 0 else shape

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.calls.append(("set_tensor_address", name, ptr))
        if not isinstance(name, str) or not isinstance(ptr, int) or name not in self.engine.modes:
            raise TypeError(f"set_tensor_address(name: str, memory: int), got ({name!r}, {ptr!r})")
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.calls.append(("execute_async_v3", stream_handle))
        return set(self.addresses) == set(self.engine.modes) and len(self.shapes) == 1


class FakeEngine:
    """ICudaEngine: one input and one output, listed in `order`, with one optimisation profile."""

    def __init__(self, order: tuple[str, ...] = ("lr", "sr"), inputs: tuple[str, ...] = ("lr",),
                 profile: tuple[tuple[int, ...], ...] = PLAN_PROFILE) -> None:
        self.order = order
        self.modes = {n: TensorIOMode.INPUT if n in inputs else TensorIOMode.OUTPUT for n in order}
        self.profile = profile
        self.contexts: list[FakeContext] = []

    @property
    def num_io_tensors(self) -> int:
        return len(self.order)

    @property
    def device_memory_size_v2(self) -> int:
        return 3 << 30

    def get_tensor_name(self, index: int) -> str:
        return self.order[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self.modes.get(name, TensorIOMode.NONE)

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        if self.modes.get(name) != TensorIOMode.INPUT or profile_index != 0:
            raise RuntimeError("profile shapes exist for input tensors of profile 0 only")
        return [tuple(s) for s in self.profile]

    def create_execution_context(self) -> FakeContext:
        self.contexts.append(FakeContext(self))
        return self.contexts[-1]


def _backend(engine: FakeEngine | None = None, module: types.ModuleType = trt_backend) -> TensorRTBackend:
    """A backend on a stand-in engine, set up by the same code __init__ runs after deserializing."""
    backend = object.__new__(module.TensorRTBackend)
    backend._attach(FAKE_TRT, engine or FakeEngine(), torch.device("cuda"), SCALE, Path("model_GPU_fp16.plan"))
    return backend


def _binding_faults(module: types.ModuleType) -> list[str]:
    """What is wrong with `module`'s binding of one batch (empty when it binds like TensorRT wants)."""
    faults = []
    for order in (("lr", "sr"), ("sr", "lr")):  # the plan may list its output first
        engine = FakeEngine(order)
        try:
            backend = _backend(engine, module)
        except Exception as exc:  # noqa: BLE001 - any failure is a fault here
            faults.append(f"attach {order}: {exc!r}")
            continue
        if (backend._input, backend._output) != ("lr", "sr"):
            faults.append(f"names {order}: input {backend._input!r}, output {backend._output!r}")
        x, y = torch.zeros(2, 3, 20, 36), torch.zeros(2, 3, 80, 144)
        ctx = backend._contexts.get(7)
        try:
            backend._enqueue(ctx, x, y, 7)
        except Exception as exc:  # noqa: BLE001
            faults.append(f"enqueue {order}: {exc!r}")
            continue
        if ctx.shapes != {"lr": (2, 3, 20, 36)}:
            faults.append(f"shapes {ctx.shapes}")
        if ctx.addresses != {"lr": x.data_ptr(), "sr": y.data_ptr()}:
            faults.append(f"addresses {ctx.addresses} (x {x.data_ptr()}, y {y.data_ptr()})")
        if ctx.calls[-1] != ("execute_async_v3", 7):
            faults.append(f"last call {ctx.calls[-1]}")
    # a shape TensorRT refuses must be an error naming the shape and the plan's profile,
    # not a run with the previous shape
    try:
        backend = _backend(FakeEngine(), module)
        backend._enqueue(backend._contexts.get(7), torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 32, 32), 7)
        faults.append("a refused input shape was not reported")
    except RtsrError as exc:
        if "(1, 3, 8, 8)" not in str(exc) or "profile" not in str(exc):
            faults.append(f"refused shape reported as {exc}")
    except Exception as exc:  # noqa: BLE001
        faults.append(f"refused shape: {exc!r}")
    return faults


def test_binding_gives_tensorrt_the_input_and_output_where_it_expects_them() -> None:
    assert _binding_faults(trt_backend) == []


# one-line mutations of the binding code, each of which must be caught
MUTATIONS = [
    ("ctx.set_input_shape(self._input, shape)", "ctx.set_input_shape(shape, self._input)"),
    ("ctx.set_input_shape(self._input, shape)", "ctx.set_input_shape(self._output, shape)"),
    ("self._input, self._output = inputs[0], outputs[0]", "self._output, self._input = inputs[0], outputs[0]"),
    ("ctx.set_tensor_address(self._input, x.data_ptr())", "ctx.set_tensor_address(self._output, x.data_ptr())"),
    ("ctx.set_tensor_address(self._output, y.data_ptr())", "ctx.set_tensor_address(self._input, y.data_ptr())"),
    ("if not ctx.set_input_shape(self._input, shape):", "if ctx.set_input_shape(self._input, shape) is None:"),
    ("inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]",
     "inputs = names[:1]"),
]


@pytest.mark.parametrize("old,new", MUTATIONS)
def test_binding_check_catches_swapped_arguments_and_names(old: str, new: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    source = Path(trt_backend.__file__).read_text()
    assert source.count(old) == 1, old
    mutant = types.ModuleType("rtsr.backends.tensorrt_mutant")
    monkeypatch.setitem(sys.modules, mutant.__name__, mutant)  # dataclasses look their module up
    exec(compile(source.replace(old, new), "tensorrt_mutant.py", "exec"), mutant.__dict__)  # noqa: S102
    assert _binding_faults(mutant) != []


def test_refused_input_shape_names_the_shape_and_the_plans_profile() -> None:
    backend = _backend()
    with pytest.raises(RtsrError, match=r"\(1, 3, 8, 8\).*model_GPU_fp16\.plan.*ShapeProfile"):
        backend._enqueue(backend._contexts.get(1), torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 32, 32), 1)


def test_profile_is_the_loaded_plans_not_the_one_asked_for() -> None:
    backend = _backend(FakeEngine(profile=((1, 3, 64, 64), (2, 3, 270, 480), (4, 3, 540, 960))))
    assert backend.profile == ShapeProfile((1, 64, 64), (2, 270, 480), (4, 540, 960))
    with pytest.raises(RtsrError, match="outside the engine profile"):
        backend.run(torch.zeros(1, 3, 32, 32))  # refused before any CUDA call


def test_the_plans_device_memory_is_read_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="rtsr.backends.tensorrt"):
        backend = _backend()
    assert backend.device_memory == 3 << 30
    assert "3.00 GiB device memory per context" in caplog.text


def test_a_plan_with_two_inputs_is_refused() -> None:
    with pytest.raises(RtsrError, match="one of each"):
        _backend(FakeEngine(("a", "b", "sr"), inputs=("a", "b")))


class Fence:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def synchronize(self) -> None:
        self.log.append(self.name)


def test_one_context_per_stream_reused_and_bounded_across_videos() -> None:
    engine = FakeEngine()
    backend = _backend(engine)
    cache = backend._contexts
    synced: list[str] = []
    first = cache.get(100)
    assert cache.get(100) is first and len(engine.contexts) == 1  # same stream, same context
    cache.ran(100, Fence(synced, "video 1"))
    for video, handle in enumerate(range(101, 111), start=2):  # every video makes a new stream
        cache.get(handle)
        cache.ran(handle, Fence(synced, f"video {video}"))
        assert len(cache) <= trt_backend.MAX_CONTEXTS
    assert len(engine.contexts) == 11
    # each context was dropped only after the work last enqueued with it had finished, oldest first
    assert synced == [f"video {v}" for v in range(1, 11 - trt_backend.MAX_CONTEXTS + 1)]
    backend.close()
    assert len(cache) == 0 and synced[-1] == "video 11"


def test_context_cache_drops_the_least_recently_used() -> None:
    made: list[str] = []
    cache = ContextCache(lambda: made.append("ctx") or object(), limit=2)
    a, b = cache.get(1), cache.get(2)
    assert cache.get(1) is a          # 1 used again: 2 is now the least recent
    cache.get(3)
    assert cache.get(1) is a and len(made) == 3
    assert cache.get(2) is not b and len(made) == 4
    with pytest.raises(RtsrError, match="execution context"):
        ContextCache(lambda: None).get(1)


def test_plan_is_deserialized_on_the_device_asked_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    current = ["cuda:0"]
    seen: dict[str, str] = {}

    @contextlib.contextmanager
    def device(d: torch.device):
        before, current[0] = current[0], str(d)
        try:
            yield
        finally:
            current[0] = before

    class Runtime:
        def __init__(self, logger: object) -> None:
            seen["runtime"] = current[0]

        def deserialize_cuda_engine(self, data: bytes) -> FakeEngine:
            seen["deserialize"] = current[0]
            return FakeEngine()

    plan = tmp_path / "x.plan"
    plan.write_bytes(b"plan")
    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            pass

    fake = types.SimpleNamespace(TensorIOMode=TensorIOMode, Runtime=Runtime, Logger=Logger)
    monkeypatch.setattr(trt_backend, "_trt", lambda: fake)
    monkeypatch.setattr(trt_backend, "build_engine", lambda *a, **k: plan)
    monkeypatch.setattr(torch.cuda, "device", device)
    generator = types.SimpleNamespace(scale=SCALE)
    backend = TensorRTBackend(generator, torch.device("cuda:1"), ShapeProfile.for_inputs(8, 1040))  # type: ignore[arg-type]
    assert seen == {"runtime": "cuda:1", "deserialize": "cuda:1"}
    assert current == ["cuda:0"] and backend.device == torch.device("cuda:1")


# select_cached: a cached plan is used only if its whole profile contains the one needed
PREFIX = "abc_GPU_sm90_trt10.13.0_fp16_"


def _plans(tmp_path: Path, *profiles: ShapeProfile) -> list[Path]:
    return [tmp_path / f"{PREFIX}{p.tag()}.plan" for p in profiles]


def test_select_cached_checks_the_min_corner(tmp_path: Path) -> None:
    """A plan with min 64x64 must not be picked for an Upscaler that sends 16x16 edge tiles."""
    needed = ShapeProfile.for_inputs(8, 1040)            # what upscale asks for by default on CUDA
    min64 = ShapeProfile((1, 64, 64), (8, 270, 480), (8, 1040, 1040))
    assert min64.covers(*needed.max) and not min64.contains(needed)
    assert select_cached(_plans(tmp_path, min64), PREFIX, needed) is None
    full = ShapeProfile((1, 16, 16), (8, 270, 480), (8, 2048, 2048))
    assert select_cached(_plans(tmp_path, min64, full), PREFIX, needed) == _plans(tmp_path, full)[0]


def test_select_cached_checks_batch_at_both_corners(tmp_path: Path) -> None:
    needed = ShapeProfile((1, 16, 16), (4, 270, 480), (8, 1040, 1040))
    batch4 = ShapeProfile((1, 16, 16), (4, 270, 480), (4, 1080, 1920))   # build-engine's batch default
    batch2_min = ShapeProfile((2, 16, 16), (8, 270, 480), (8, 1040, 1040))
    assert select_cached(_plans(tmp_path, batch4, batch2_min), PREFIX, needed) is None


def test_select_cached_prefers_the_smallest_containing_plan(tmp_path: Path) -> None:
    needed = ShapeProfile((1, 16, 16), (2, 96, 128), (2, 128, 128))
    small = ShapeProfile((1, 16, 16), (2, 96, 128), (2, 256, 256))
    big = ShapeProfile((1, 8, 8), (4, 270, 480), (8, 1040, 1040))
    plans = _plans(tmp_path, big, small) + [tmp_path / f"zzz_GPU_sm90_trt10.13.0_fp16_{needed.tag()}.plan"]
    assert select_cached(plans, PREFIX, needed) == plans[1]
    assert select_cached(plans, PREFIX, 8, 1000, 16) == plans[0]      # one input, the older form
    assert select_cached(plans, PREFIX, 9, 16, 16) is None


@pytest.fixture()
def fake_build(monkeypatch: pytest.MonkeyPatch) -> list[ShapeProfile]:
    """build_engine with TensorRT's builder and the GPU faked: the profiles it builds plans for."""
    built: list[ShapeProfile] = []
    monkeypatch.setattr(trt_backend, "unavailable_reason", lambda device: None)
    monkeypatch.setattr(trt_backend, "_trt", lambda: types.SimpleNamespace(__version__="10.13.0"))
    monkeypatch.setattr(trt_backend, "model_hash", lambda generator: "abc")
    monkeypatch.setattr(trt_backend, "_onnx_plan", lambda trt, g, profile, *a: built.append(profile) or b"plan")
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: types.SimpleNamespace(name="GPU", major=9, minor=0))
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    return built


def test_build_engine_reuses_a_cached_plan_only_when_its_profile_contains_ours(
        fake_build: list[ShapeProfile], tmp_path: Path) -> None:
    """build_engine's cache lookup with the whole profile: the max corner alone would reuse min64."""
    built = fake_build
    needed = ShapeProfile.for_inputs(8, 1040)
    min64 = ShapeProfile((1, 64, 64), (8, 270, 480), (8, 1040, 1040))
    _plans(tmp_path, min64)[0].write_bytes(b"min64")
    path = trt_backend.build_engine(object(), torch.device("cuda"), needed, cache_dir=tmp_path)  # type: ignore[arg-type]
    assert built == [needed] and path == _plans(tmp_path, needed)[0]
    larger = ShapeProfile((1, 16, 16), (8, 270, 480), (8, 1040, 1040))
    path.unlink()
    _plans(tmp_path, larger)[0].write_bytes(b"larger")
    smaller_need = ShapeProfile((1, 16, 16), (4, 270, 480), (4, 960, 960))
    assert trt_backend.build_engine(object(), torch.device("cuda"), smaller_need,  # type: ignore[arg-type]
                                    cache_dir=tmp_path) == _plans(tmp_path, larger)[0]
    assert built == [needed]


def test_build_engine_keeps_the_plan_cache_under_the_bound_it_is_given(
        fake_build: list[ShapeProfile], tmp_path: Path) -> None:
    """A new plan past `cache_mib` pushes out the least recently used plan (an hour old), not itself."""
    old = _plans(tmp_path, ShapeProfile((1, 64, 64), (8, 270, 480), (8, 1040, 1040)))[0]
    old.write_bytes(b"old plan")
    os.utime(old, (time.time() - 3600,) * 2)
    needed = ShapeProfile.for_inputs(8, 1040)
    path = trt_backend.build_engine(object(), torch.device("cuda"), needed, cache_dir=tmp_path,  # type: ignore[arg-type]
                                    cache_mib=0)
    assert fake_build == [needed] and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_build_engine_defaults_are_the_profile_upscale_asks_for(monkeypatch: pytest.MonkeyPatch,
                                                                tiny_weights: Path) -> None:
    """`rtsr build-engine` with no shape options builds the plan `rtsr upscale` on CUDA asks for (its
    batch, its tiles plus overlap); before, its defaults (batch 4, 960x540) were never reused."""
    import rtsr.backends.tensorrt as tensorrt
    from rtsr import cli
    from rtsr.models.weights import load_weights
    from rtsr.settings import load_settings
    from rtsr.tiling import receptive_radius

    built = []
    import rtsr.devices

    monkeypatch.setattr(rtsr.devices, "resolve_device", lambda name: torch.device("cpu"))  # no GPU here
    monkeypatch.setattr(tensorrt, "unavailable_reason", lambda device: None)
    monkeypatch.setattr(tensorrt, "build_engine", lambda g, d, profile, *a, **k: built.append(profile) or Path("x"))
    assert cli.main(["build-engine", "--model", str(tiny_weights)]) == 0
    settings, (generator, _) = load_settings(), load_weights(tiny_weights)
    side = settings.tile_for("cuda") + 2 * receptive_radius(generator.config)
    assert built[0] == tensorrt.ShapeProfile.for_inputs(settings.batch_for("cuda"), side)
    assert built[0].covers(settings.batch_for("cuda"), side, side)
    assert cli.main(["build-engine", "--model", str(tiny_weights), "--max", "640x360"]) == 0
    assert built[1] == tensorrt.ShapeProfile.from_sizes("64x64", "480x270", "640x360", 4)
