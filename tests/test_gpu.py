"""GPU checks (`pytest -m gpu` on a GPU machine); each skips with its reason elsewhere."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rtsr import Upscaler
from rtsr.backends import unavailable_reason
from rtsr.quality import psnr_y

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def _trt_reason() -> str | None:
    return unavailable_reason("tensorrt", torch.device("cuda")) if torch.cuda.is_available() else "no CUDA GPU"


needs_trt = pytest.mark.skipif(_trt_reason() is not None, reason=f"TensorRT backend unavailable: {_trt_reason()}")


@needs_cuda
def test_torch_cuda_matches_cpu(photo: np.ndarray) -> None:
    lr = photo[:96, :128]
    cpu = Upscaler("srgan-x4-lite", backend="torch", device="cpu")(lr)
    gpu = Upscaler("srgan-x4-lite", backend="torch", device="cuda")(lr)
    assert psnr_y(cpu, gpu) > 45


@needs_cuda
def test_tensor_stays_on_device() -> None:
    up = Upscaler("srgan-x4-lite", backend="torch", device="cuda")
    x = torch.rand(2, 3, 32, 48, device="cuda", dtype=torch.float16)
    y = up(x)
    assert y.is_cuda and y.dtype == torch.float16 and y.shape == (2, 3, 128, 192)


@needs_trt
def test_tensorrt_matches_torch_and_reuses_cache(photo: np.ndarray) -> None:
    from rtsr.backends.tensorrt import CACHE_DIR

    lr = photo[:180, :320]
    ref = Upscaler("srgan-x4", backend="torch", device="cuda")(lr)
    trt_up = Upscaler("srgan-x4", backend="tensorrt", device="cuda")
    assert psnr_y(ref, trt_up(lr)) > 45
    plans = sorted(CACHE_DIR.glob("*.plan"))
    mtimes = [p.stat().st_mtime for p in plans]
    Upscaler("srgan-x4", backend="tensorrt", device="cuda")
    assert sorted(CACHE_DIR.glob("*.plan")) == plans and [p.stat().st_mtime for p in plans] == mtimes


@needs_cuda
def test_cuda_video_pipeline_matches_cpu(tmp_path: Path, photo: np.ndarray) -> None:
    import av

    from rtsr.video.pipeline import upscale_video
    from rtsr.video.synth import low_res, pan_frames, write_clip

    clip = tmp_path / "pan.mp4"
    write_clip(clip, low_res(pan_frames(photo, (256, 192), 10), 4), audio=True, crf=0)
    outs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.mp4"
        upscale_video(clip, out, Upscaler("srgan-x4-lite", backend="torch", device=device))
        with av.open(str(out)) as c:
            outs[device] = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(outs["cpu"]) == len(outs["cuda"]) == 10
    assert min(psnr_y(a, b) for a, b in zip(outs["cpu"], outs["cuda"])) > 40
