"""CPU precision (issue 16 item 1): bf16 autocast where the CPU has native bf16, fp32 elsewhere,
fp16 refused on the CPU; parity of bf16 with fp32 on a real photo, odd sizes and tiles."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from rtsr import Upscaler, devices
from rtsr.backends import precision_reason
from rtsr.cli import main
from rtsr.devices import resolve_precision
from rtsr.errors import RtsrError

CPU = torch.device("cpu")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def lite_fp32() -> Upscaler:
    return Upscaler("srgan-x4-lite", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def lite_bf16() -> Upscaler:
    return Upscaler("srgan-x4-lite", device="cpu", precision="bf16")  # emulated (with a warning) where not native


def test_bf16_matches_fp32_on_a_real_photo(photo: np.ndarray, lite_fp32: Upscaler, lite_bf16: Upscaler) -> None:
    assert (lite_fp32.precision, lite_bf16.precision) == ("fp32", "bf16")
    ref, out = lite_fp32(photo), lite_bf16(photo)
    assert out.shape == ref.shape and out.dtype == np.uint8
    assert psnr(out, ref) > 45


def test_bf16_tensor_output_is_float32_in_range(lite_bf16: Upscaler) -> None:
    y = lite_bf16.backend.run(torch.rand(1, 3, 17, 23))
    assert y.dtype == torch.float32 and y.shape == (1, 3, 68, 92)
    assert 0 <= y.min().item() and y.max().item() <= 1


@pytest.mark.parametrize("h,w", [(61, 83), (37, 101)])
def test_bf16_odd_sizes_tiled_equal_untiled(photo: np.ndarray, lite_fp32: Upscaler, h: int, w: int) -> None:
    crop = np.ascontiguousarray(photo[40:40 + h, 60:60 + w])
    whole = Upscaler("srgan-x4-lite", device="cpu", precision="bf16", tile=4096)
    tiled = Upscaler("srgan-x4-lite", device="cpu", precision="bf16", tile=24)
    assert tiled.tile_count(h, w) > 4
    a, b = whole(crop), tiled(crop)
    assert a.shape == (4 * h, 4 * w, 3)
    # the overlap covers the receptive field, so only bf16 rounding may differ: at most 1 level in 255
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert psnr(a, b) > 50
    assert psnr(a, lite_fp32(crop)) > 45
    x = torch.from_numpy(crop).permute(2, 0, 1).float() / 255  # the tensor path, tiled too
    assert (whole(x) - tiled(x)).abs().max().item() < 2 / 255


@pytest.mark.parametrize("native,expected", [(True, "bf16"), (False, "fp32")])
def test_auto_follows_the_detected_capability(monkeypatch: pytest.MonkeyPatch, tiny_weights: Path,
                                              native: bool, expected: str) -> None:
    monkeypatch.setattr(devices, "native_bf16", lambda: (native, "stubbed detector"))
    up = Upscaler(tiny_weights, device="cpu")
    assert up.precision == expected and up.backend.precision == expected
    assert up.backend.dtype == torch.float32  # bf16 runs inside autocast; frames go in and out as float32
    assert up(np.zeros((8, 8, 3), np.uint8)).shape == (32, 32, 3)
    assert Upscaler(tiny_weights, device="cpu", precision="fp32").precision == "fp32"


@pytest.mark.parametrize("flags,native", [({"fpu", "avx512f", "avx512_bf16"}, True), ({"amx_tile", "amx_bf16"}, True),
                                          ({"fpu", "avx2", "avx512f"}, False), (None, False)])
def test_native_bf16_reads_the_cpu_flags(monkeypatch: pytest.MonkeyPatch, flags: set[str] | None, native: bool) -> None:
    monkeypatch.setattr(devices, "cpu_flags", lambda: flags)
    found, why = devices.native_bf16()
    assert found is native and "torch capability" in why


def test_bf16_without_native_support_runs_with_a_warning(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(devices, "native_bf16", lambda: (False, "no avx512_bf16 (stub)"))
    with caplog.at_level(logging.WARNING, logger="rtsr"):
        assert resolve_precision("bf16", CPU) == "bf16"
    assert "emulated" in caplog.text


def test_fp16_on_the_cpu_is_refused(tiny_weights: Path) -> None:
    with pytest.raises(RtsrError, match="fp16 needs a CUDA GPU"):
        Upscaler(tiny_weights, device="cpu", precision="fp16")
    with pytest.raises(RtsrError, match="unknown precision"):
        resolve_precision("int8", CPU)


def test_cuda_precisions() -> None:
    """Decided without touching a GPU: fp16 stays the CUDA default, fp32 runs fp32, bf16 is refused."""
    cuda = torch.device("cuda", 0)
    assert resolve_precision("auto", cuda) == "fp16" and resolve_precision("fp16", cuda) == "fp16"
    assert resolve_precision("fp32", cuda) == "fp32"
    with pytest.raises(RtsrError, match="bf16 is for CPUs"):
        resolve_precision("bf16", cuda)
    assert precision_reason("tensorrt", "fp32") and precision_reason("trt", "fp16") is None
    assert precision_reason("torch", "bf16") is None


def test_cli_refuses_fp16_on_the_cpu_in_one_line(tmp_path: Path, tiny_weights: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cv2 = pytest.importorskip("cv2")
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.zeros((8, 8, 3), np.uint8))
    code = main(["upscale", str(src), "--model", str(tiny_weights), "--device", "cpu", "--precision", "fp16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not (tmp_path / "in_x4.png").exists()
    assert err[0] == "rtsr: error: precision fp16 needs a CUDA GPU; on the CPU use auto, bf16 or fp32"


def test_info_says_what_auto_runs_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from rtsr.info import cpu_precision

    monkeypatch.setattr(devices, "native_bf16", lambda: (True, "avx512_bf16 in /proc/cpuinfo"))
    assert cpu_precision().startswith("auto -> bf16, native (avx512_bf16")
    monkeypatch.setattr(devices, "native_bf16", lambda: (False, "no avx512_bf16"))
    assert cpu_precision().startswith("auto -> fp32")
