"""ONNX export (the TensorRT build's input) and the engine cache logic, without a GPU."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rtsr.backends.onnx_export import INPUT, export_onnx
from rtsr.backends.tensorrt import (BuildProgress, ShapeProfile, _progress_monitor, engine_key, model_hash,
                                   select_cached)
from rtsr.backends.torch_tensorrt_route import export_program, torch_tensorrt_unavailable_reason, version_mismatch
from rtsr.settings import parse_size
from rtsr.errors import RtsrError
from rtsr.models import fold_batchnorm
from tests.conftest import make_generator

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("shape", [(1, 3, 20, 28), (3, 3, 33, 17)])
def test_fp32_graph_matches_torch_with_dynamic_shapes(shape: tuple[int, int, int, int]) -> None:
    g = make_generator(blocks=2, channels=16)
    model_bytes = export_onnx(g, fp16=False)
    onnx.checker.check_model(onnx.load_from_string(model_bytes))
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    x = torch.rand(shape)
    (y,) = session.run(None, {INPUT: x.numpy()})
    with torch.no_grad():
        expected = fold_batchnorm(g)(x).clamp(0, 1).numpy()
    assert y.shape == expected.shape
    assert np.abs(y - expected).max() < 1e-4


def test_fp16_graph_is_half_with_channel_shaped_prelu() -> None:
    model = onnx.load_from_string(export_onnx(make_generator(channels=16), fp16=True))
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    inits = {i.name: i for i in model.graph.initializer}
    slopes = [inits[n.input[1]] for n in model.graph.node if n.op_type == "PRelu"]
    assert slopes and all(list(s.dims) == [16, 1, 1] and s.data_type == onnx.TensorProto.FLOAT16 for s in slopes)


def test_fp16_graph_runs_close_to_fp32() -> None:
    """Checked wherever a runtime executes FP16 convolutions (onnxruntime's CPU provider does)."""
    g = make_generator(channels=16)
    x = torch.rand(1, 3, 16, 16)
    half = ort.InferenceSession(export_onnx(g, fp16=True), providers=["CPUExecutionProvider"])
    (y,) = half.run(None, {INPUT: x.half().numpy()})
    with torch.no_grad():
        expected = fold_batchnorm(g)(x).clamp(0, 1).numpy()
    assert np.abs(y.astype(np.float32) - expected).max() < 2e-2


def test_engine_key_changes_with_every_part() -> None:
    p = ShapeProfile((1, 64, 64), (2, 270, 480), (4, 540, 960))
    base = engine_key("abc", "NVIDIA H100 80GB HBM3", (9, 0), "10.13.0", "fp16", p)
    assert "sm90" in base and " " not in base and base.endswith(".plan")
    others = [engine_key("abd", "NVIDIA H100 80GB HBM3", (9, 0), "10.13.0", "fp16", p),
              engine_key("abc", "NVIDIA L4", (8, 9), "10.13.0", "fp16", p),
              engine_key("abc", "NVIDIA H100 80GB HBM3", (9, 0), "11.4.0", "fp16", p),
              engine_key("abc", "NVIDIA H100 80GB HBM3", (9, 0), "10.13.0", "fp16",
                         ShapeProfile((1, 64, 64), (2, 270, 480), (8, 540, 960)))]
    assert len({base, *others}) == 5


def test_model_hash_follows_weights() -> None:
    a, b = make_generator(seed=0), make_generator(seed=0)
    assert model_hash(a) == model_hash(b)
    with torch.no_grad():
        b.tail.bias.add_(1e-3)
    assert model_hash(a) != model_hash(b)


def test_profile_selection_picks_smallest_covering(tmp_path: Path) -> None:
    prefix = "abc_GPU_sm90_trt10.13.0_fp16_"
    small = ShapeProfile((1, 64, 64), (1, 270, 480), (2, 270, 480))
    big = ShapeProfile((1, 64, 64), (2, 540, 960), (4, 1080, 1920))
    plans = [tmp_path / f"{prefix}{small.tag()}.plan", tmp_path / f"{prefix}{big.tag()}.plan",
             tmp_path / f"zzz_GPU_sm90_trt10.13.0_fp16_{big.tag()}.plan"]
    assert select_cached(plans, prefix, 1, 270, 480) == plans[0]
    assert select_cached(plans, prefix, 4, 540, 960) == plans[1]
    assert select_cached(plans, prefix, 8, 540, 960) is None


def test_profile_validation_and_sizes() -> None:
    assert parse_size("640x360") == (640, 360)
    with pytest.raises(RtsrError):
        parse_size("640*360")
    with pytest.raises(RtsrError):
        ShapeProfile((1, 64, 64), (1, 32, 32), (1, 128, 128))
    p = ShapeProfile.from_sizes("64x64", "480x270", "960x540", 4)
    assert p.covers(4, 540, 960) and not p.covers(5, 540, 960) and not p.covers(1, 541, 960)


@pytest.mark.parametrize("height,width", [(270, 480), (540, 960), (1080, 1920), (37, 2000), (961, 961)])
def test_profile_for_inputs_covers_every_tile(height: int, width: int) -> None:
    """Whatever frame the Upscaler tiles, every tile it sends fits the engine profile."""
    from rtsr.tiling import tile_spans

    tile, overlap, batch = 960, 40, 8
    profile = ShapeProfile.for_inputs(batch, tile + 2 * overlap)
    for y0, y1 in tile_spans(height, tile):
        for x0, x1 in tile_spans(width, tile):
            h = min(height, y1 + overlap) - max(0, y0 - overlap)
            w = min(width, x1 + overlap) - max(0, x0 - overlap)
            assert profile.covers(batch, h, w) and profile.covers(1, h, w)


def test_build_progress_tracks_nested_phases_and_cancels() -> None:
    class FakeMonitorBase:  # stands in for trt.IProgressMonitor, which needs TensorRT
        def __init__(self) -> None:
            self.base_initialised = True

    progress = BuildProgress()
    monitor = _progress_monitor(SimpleNamespace(IProgressMonitor=FakeMonitorBase), progress)
    assert monitor.base_initialised
    monitor.phase_start("Building engine", None, 3)
    monitor.phase_start("Tactic selection", "Building engine", 10)
    assert monitor.step_complete("Tactic selection", 6)
    assert progress.phases == {"Building engine": [0, 3], "Tactic selection": [7, 10]}
    monitor.phase_finish("Tactic selection")
    assert monitor.step_complete("Building engine", 0) and progress.phases == {"Building engine": [1, 3]}
    progress.cancel()  # what Ctrl-C does during a build: TensorRT stops at its next step
    assert monitor.step_complete("Building engine", 1) is False


def test_torch_tensorrt_route_only_where_versions_line_up() -> None:
    assert version_mismatch("2.13.0", "2.13.0+cpu") is None
    assert version_mismatch("2.13.0+cu130", "2.13.1") is None
    assert "built for torch 2.14" in version_mismatch("2.14.0", "2.13.0+cpu")
    assert torch_tensorrt_unavailable_reason()  # not installable on a CPU machine


def test_torch_tensorrt_route_export_is_dynamic_within_the_profile() -> None:
    """The route's torch.export step (no TensorRT needed): one program serves every shape in the
    profile and matches the eager generator, clamp included."""
    g = make_generator(channels=16)
    profile = ShapeProfile((1, 16, 16), (2, 24, 40), (3, 48, 64))
    program = export_program(g, torch.device("cpu"), profile, dtype=torch.float32).module()
    for shape in ((1, 3, 16, 16), (3, 3, 48, 64), (2, 3, 29, 37)):
        x = torch.rand(shape)
        with torch.no_grad():
            y = program(x)
            assert y.shape == (shape[0], 3, shape[2] * 4, shape[3] * 4)
            assert torch.allclose(y, g(x).clamp(0, 1), atol=1e-4)


def test_profile_as_nchw_shapes() -> None:
    profile = ShapeProfile((1, 16, 16), (4, 270, 480), (8, 540, 960))
    assert profile.nchw() == ((1, 3, 16, 16), (4, 3, 270, 480), (8, 3, 540, 960))


def test_build_engine_refuses_an_unknown_route() -> None:
    from rtsr.backends.tensorrt import build_engine

    profile = ShapeProfile((1, 16, 16), (1, 32, 32), (1, 64, 64))
    with pytest.raises(RtsrError, match="unknown build route"):
        build_engine(make_generator(), torch.device("cpu"), profile, route="tflite")
