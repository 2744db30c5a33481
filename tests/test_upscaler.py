from pathlib import Path

import numpy as np
import pytest
import torch

from rtsr import RtsrError, Upscaler
from rtsr.tiling import tile_spans


def test_numpy_single_and_batch(tiny_weights: Path) -> None:
    up = Upscaler(tiny_weights, device="cpu")
    frame = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    out = up(frame)
    assert out.shape == (120, 160, 3) and out.dtype == np.uint8
    batch = up(np.stack([frame, frame[::-1].copy(), frame]))
    assert batch.shape == (3, 120, 160, 3)
    np.testing.assert_array_equal(batch[0], out)
    np.testing.assert_array_equal(batch[2], out)


def test_tensor_in_tensor_out_same_dtype(tiny_weights: Path) -> None:
    up = Upscaler(tiny_weights, device="cpu")
    x = torch.rand(2, 3, 12, 16, dtype=torch.float64)
    y = up(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float64 and y.shape == (2, 3, 48, 64)
    assert y.min() >= 0 and y.max() <= 1
    assert up(x[0]).shape == (3, 48, 64)


def test_numpy_and_tensor_paths_agree(tiny_weights: Path) -> None:
    up = Upscaler(tiny_weights, device="cpu")
    frame = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    via_tensor = up(torch.from_numpy(frame).permute(2, 0, 1).float() / 255)
    expected = (via_tensor.permute(1, 2, 0) * 255).round().byte().numpy()
    np.testing.assert_array_equal(up(frame), expected)


def test_tiled_equals_untiled(tiny_weights: Path) -> None:
    whole = Upscaler(tiny_weights, device="cpu", tile=4096)
    tiled = Upscaler(tiny_weights, device="cpu", tile=24)
    x = torch.rand(1, 3, 70, 90)
    a, b = whole(x), tiled(x)
    assert (a - b).abs().max().item() < 1e-5


def test_tiles_without_overlap_show_seams(tiny_weights: Path) -> None:
    """The overlap is what makes tiling exact: without it the joins differ."""
    x = torch.rand(1, 3, 70, 90)
    exact = Upscaler(tiny_weights, device="cpu", tile=4096)(x)
    seamed = Upscaler(tiny_weights, device="cpu", tile=24, tile_overlap=0)(x)
    assert (exact - seamed).abs().max().item() > 1e-3


@pytest.mark.parametrize("length,tile", [(70, 24), (24, 24), (25, 24), (1, 24)])
def test_tile_spans_cover_exactly(length: int, tile: int) -> None:
    spans = list(tile_spans(length, tile))
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert all(0 < e - s <= tile for s, e in spans)


def test_bad_inputs_are_user_errors(tiny_weights: Path) -> None:
    up = Upscaler(tiny_weights, device="cpu")
    with pytest.raises(RtsrError):
        up(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(RtsrError):
        up(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(RtsrError):
        up([1, 2, 3])  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_a_clear_error(tiny_weights: Path) -> None:
    with pytest.raises(RtsrError, match="cuda"):
        Upscaler(tiny_weights, device="cuda")


def test_tensorrt_without_tensorrt_is_a_clear_error(tiny_weights: Path) -> None:
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    with pytest.raises(RtsrError, match="tensorrt"):
        Upscaler(tiny_weights, backend="tensorrt", device="cpu")


def test_auto_backend_falls_back_to_torch_where_nothing_else_runs(tiny_weights: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """auto measures the backends that can run (rtsr.backends.autoselect); torch always can."""
    import rtsr.backends

    monkeypatch.setenv("RTSR_CACHE_DIR", str(tiny_weights.parent / "cache"))  # no earlier measurement
    monkeypatch.setattr(rtsr.backends, "unavailable_reason",
                        lambda name, device: None if name == "torch" else "not installed (test)")
    assert Upscaler(tiny_weights, backend="auto", device="cpu").backend.name == "torch"


def test_too_small_tile_or_batch_is_user_error(tiny_weights: Path) -> None:
    with pytest.raises(RtsrError):
        Upscaler(tiny_weights, device="cpu", tile=4)
    with pytest.raises(RtsrError):
        Upscaler(tiny_weights, device="cpu", batch=0)


@pytest.mark.parametrize("shape", [(1, 40), (40, 2), (5, 7)])
def test_tiny_pictures_keep_their_colour(shape: tuple[int, int]) -> None:
    """A picture a few pixels high is edge-padded to MIN_SIDE before the network (whose own zero
    padding turned a flat 1 x 40 colour a third darker and lost its blue) and cropped back: the
    shipped model (bicubic skip: flat areas start from bicubic) keeps a flat colour within a level,
    on the numpy and the tensor path."""
    from rtsr.upscaler import MIN_SIDE, small_frame_padding

    assert small_frame_padding(MIN_SIDE, 100) == (0, 0, 0, 0)
    assert small_frame_padding(1, MIN_SIDE + 1) == ((MIN_SIDE - 1) // 2, MIN_SIDE - 1 - (MIN_SIDE - 1) // 2, 0, 0)
    up = Upscaler("srgan-x4-lite", backend="torch", device="cpu", precision="fp32")
    flat = np.empty((*shape, 3), np.uint8)
    flat[:] = (120, 80, 200)
    out = up(flat)
    assert out.shape == (4 * shape[0], 4 * shape[1], 3)
    assert np.abs(out.reshape(-1, 3).mean(0) - (120, 80, 200)).max() < 1.5  # unpadded: 164 levels off in blue
    tensor = up(torch.from_numpy(flat).permute(2, 0, 1).float() / 255)
    assert tensor.shape == (3, 4 * shape[0], 4 * shape[1])
    assert (tensor * 255 - torch.from_numpy(out).permute(2, 0, 1).float()).abs().max() <= 1
