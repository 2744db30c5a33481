"""Vulkan backend through ncnn (issue 16 item 3), on whatever Vulkan device is here: in CI that is
lavapipe, Mesa's software device (.ci/run installs it), so these check correctness, not speed.
Parity with fp32 torch on a real photo, odd sizes (H*W % 4 != 0 broke ncnn's numpy input path),
tiles through Upscaler, the converted-model cache, and one clear error without a Vulkan device."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rtsr import Upscaler
from rtsr.backends import precision_reason, unavailable_reason
from rtsr.errors import RtsrError
from rtsr.quality import psnr_y
from tests.backend_fixtures import cache, chelsea  # noqa: F401 (fixtures)
from tests.conftest import make_generator

CPU = torch.device("cpu")
REASON = unavailable_reason("vulkan", CPU)
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"Vulkan backend cannot run here: {REASON}")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def crop(chelsea: np.ndarray) -> np.ndarray:
    return chelsea[120:143, 150:181]  # 31 x 23: odd, 713 pixels (software Vulkan is slow)


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_parity_with_fp32_torch_on_a_real_photo(crop: np.ndarray, precision: str) -> None:
    from rtsr.backends.vulkan_backend import VulkanBackend

    up = Upscaler("srgan-x4-lite", backend="vulkan", device="cpu", precision=precision)
    assert isinstance(up.backend, VulkanBackend) and up.backend.name == "vulkan"
    assert up.precision in ("fp32", "fp16") and (precision == "auto" or up.precision == "fp32")
    ref = Upscaler("srgan-x4-lite", backend="torch", device="cpu", precision="fp32")(crop)
    out = up(crop)
    assert out.shape == (4 * 23, 4 * 31, 3) and out.dtype == np.uint8
    assert psnr_y(ref, out) > 45


def test_tiles_batches_and_device_index(tiny_weights: Path, crop: np.ndarray) -> None:
    frames = np.stack([crop, crop[::-1, ::-1]])
    ref = Upscaler(tiny_weights, backend="torch", device="cpu", precision="fp32")(frames)
    up = Upscaler(tiny_weights, backend="vulkan:0", device="cpu", precision="fp32", tile=16, batch=2)
    assert up.tile_count(23, 31) > 1 and up.backend.index == 0
    out = up(frames)
    assert out.shape == ref.shape == (2, 92, 124, 3)
    assert min(psnr_y(a, b) for a, b in zip(ref, out)) > 45
    with pytest.raises(RtsrError, match="Vulkan device 99 asked for"):
        Upscaler(tiny_weights, backend="vulkan:99", device="cpu")
    assert "bf16" in precision_reason("vulkan", "bf16")


def test_cli_takes_a_vulkan_device_by_index(tiny_weights: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import cv2

    from rtsr.cli import main

    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.full((9, 7, 3), 128, np.uint8))
    assert main(["upscale", str(src), "--model", str(tiny_weights), "--backend", "vulkan:0", "-o", str(tmp_path / "o.png")]) == 0
    assert cv2.imread(str(tmp_path / "o.png")).shape == (36, 28, 3)
    capsys.readouterr()
    code = main(["upscale", str(src), "--model", str(tiny_weights), "--backend", "vulkan:99", "-o", str(tmp_path / "p.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Vulkan device 99 asked for" in err[0] and not (tmp_path / "p.png").exists()


def test_second_construction_does_not_convert_again(cache: Path) -> None:
    from rtsr.backends.tensorrt import model_hash
    from rtsr.backends.vulkan_backend import VulkanBackend

    g = make_generator(seed=7)
    before = VulkanBackend.conversions
    first = VulkanBackend(g, CPU, precision="fp32")
    assert VulkanBackend.conversions == before + 1
    pairs = sorted((cache / "vulkan").glob(f"{model_hash(g)}_*.param"))
    assert len(pairs) == 1 and pairs[0].with_suffix(".bin").is_file()
    stamp = pairs[0].stat().st_mtime_ns
    second = VulkanBackend(g, CPU, precision="fp32")
    assert VulkanBackend.conversions == before + 1 and pairs[0].stat().st_mtime_ns == stamp
    x = torch.rand(1, 3, 13, 11)  # 143 pixels: odd
    y = first.run(x)
    assert y.shape == (1, 3, 52, 44) and torch.equal(y, second.run(x))


def test_without_a_vulkan_device_one_clear_error(tiny_weights: Path, tmp_path: Path) -> None:
    """A real Vulkan loader that finds no driver (VK_DRIVER_FILES names none): the CLI's one line."""
    import cv2

    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.zeros((8, 8, 3), np.uint8))
    env = dict(os.environ, VK_DRIVER_FILES=str(tmp_path / "none.json"), VK_ICD_FILENAMES=str(tmp_path / "none.json"),
               RTSR_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-m", "rtsr", "upscale", str(src), "--model", str(tiny_weights),
                           "--backend", "vulkan", "-o", str(tmp_path / "o.png")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("rtsr")]
    assert done.returncode == 2, done.stderr
    assert lines == [lines[0]] and lines[0].startswith("rtsr: error:") and "no Vulkan device found" in lines[0]
    assert "Traceback" not in done.stderr and not (tmp_path / "o.png").exists()
