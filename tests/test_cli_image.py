"""`rtsr upscale` on images, and the one-line errors a user can cause."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rtsr.cli import main


def write_png(path: Path, h: int = 24, w: int = 32) -> np.ndarray:
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".bmp"])
def test_upscale_image_default_name_and_format(tmp_path: Path, tiny_weights: Path, suffix: str) -> None:
    src = tmp_path / f"pic{suffix}"
    write_png(src)
    assert main(["upscale", str(src), "--model", str(tiny_weights), "--device", "cpu"]) == 0
    out = tmp_path / f"pic_x4{suffix}"
    img = cv2.imread(str(out))
    assert img is not None and img.shape == (96, 128, 3)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_alpha_channel_survives(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "rgba.png"
    rgba = np.full((10, 12, 4), 200, np.uint8)
    rgba[..., 3] = 77
    cv2.imwrite(str(src), rgba)
    assert main(["upscale", str(src), "--model", str(tiny_weights), "--device", "cpu"]) == 0
    out = cv2.imread(str(tmp_path / "rgba_x4.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (40, 48, 4) and int(out[..., 3].mean()) == 77


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtsr", *args], capture_output=True, text=True, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("rtsr: error:") and fragment in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def test_missing_input(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("upscale", str(tmp_path / "nope.png")), "not found")


def test_unreadable_image(tmp_path: Path, tiny_weights: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    assert_one_line_error(run_cli("upscale", str(bad), "--model", str(tiny_weights)), "cannot read")
    assert not (tmp_path / "bad_x4.png").exists()


def test_unknown_model(tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    write_png(src)
    assert_one_line_error(run_cli("upscale", str(src), "--model", "no-such-model"), "unknown model")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "a.png"
    write_png(src)
    proc = run_cli("upscale", str(src), "--model", str(tiny_weights), "--device", "cuda")
    assert_one_line_error(proc, "cuda")
    assert not (tmp_path / "a_x4.png").exists()


def test_existing_output_needs_overwrite(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "a.png"
    write_png(src)
    out = tmp_path / "a_x4.png"
    out.write_bytes(b"keep me")
    assert_one_line_error(run_cli("upscale", str(src), "--model", str(tiny_weights)), "--overwrite")
    assert out.read_bytes() == b"keep me"
    assert main(["upscale", str(src), "--model", str(tiny_weights), "--overwrite", "--device", "cpu"]) == 0
    assert cv2.imread(str(out)).shape == (96, 128, 3)


def test_output_equal_to_input_is_refused(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "a.png"
    original = write_png(src)
    proc = run_cli("upscale", str(src), "-o", str(src), "--model", str(tiny_weights), "--overwrite")
    assert_one_line_error(proc, "is the input")
    np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2RGB), original)


def test_build_engine_without_tensorrt_or_gpu() -> None:
    try:
        import tensorrt  # noqa: F401
        if torch.cuda.is_available():
            pytest.skip("this machine can build engines")
    except ImportError:
        pass
    proc = run_cli("build-engine", "--model", "srgan-x4-lite")
    assert_one_line_error(proc, "")
    assert "TensorRT" in proc.stderr or "cuda" in proc.stderr.lower()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("backend", ["tensorrt", "trt"])
def test_tensorrt_backend_without_gpu_is_one_line(tmp_path: Path, backend: str) -> None:
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.zeros((8, 8, 3), np.uint8))
    proc = run_cli("upscale", str(src), "--backend", backend, "--model", "srgan-x4-lite")
    assert_one_line_error(proc, "backend 'tensorrt' unavailable")
    assert not (tmp_path / "in_x4.png").exists()


def test_info_reports_backends() -> None:
    proc = run_cli("info")
    assert proc.returncode == 0
    assert "backend torch:" in proc.stdout and "backend tensorrt:" in proc.stdout


def test_several_inputs_one_model_bad_one_reported_rest_written(tmp_path: Path, tiny_weights: Path) -> None:
    from rtsr.video.synth import write_clip

    write_png(tmp_path / "a.png")
    write_clip(tmp_path / "b.mp4", [np.full((16, 24, 3), 9 * i, np.uint8) for i in range(4)], audio=False)
    (tmp_path / "c.mp4").write_text("not a video")
    proc = run_cli("upscale", *(str(tmp_path / n) for n in ("a.png", "c.mp4", "gone.png", "b.mp4")),
                   "--model", str(tiny_weights), "--device", "cpu", "-q")
    assert proc.returncode == 2
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 3 and "c.mp4 is not a video" in errors[0] and "not found" in errors[1]
    assert "2 of 4 inputs failed" in errors[2]
    assert cv2.imread(str(tmp_path / "a_x4.png")).shape == (96, 128, 3)
    assert (tmp_path / "b_x4.mp4").is_file() and not (tmp_path / "c_x4.mp4").exists()


def test_several_inputs_into_a_folder(tmp_path: Path, tiny_weights: Path) -> None:
    for name in ("a.png", "b.png"):
        write_png(tmp_path / name)
    out = tmp_path / "out"
    out.mkdir()
    args = [str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--model", str(tiny_weights), "--device", "cpu"]
    assert main(["upscale", *args, "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_x4.png", "b_x4.png"]
    assert_one_line_error(run_cli("upscale", *args, "-o", str(tmp_path / "x.png")), "must be an existing folder")


def test_several_inputs_model_error_once(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        write_png(tmp_path / name)
    proc = run_cli("upscale", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--model", "no-such-model")
    assert_one_line_error(proc, "no-such-model")
