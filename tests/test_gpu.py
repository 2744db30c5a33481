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
    from rtsr.locations import tensorrt_cache_dir

    cache = tensorrt_cache_dir()
    lr = photo[:180, :320]
    ref = Upscaler("srgan-x4", backend="torch", device="cuda")(lr)
    trt_up = Upscaler("srgan-x4", backend="tensorrt", device="cuda")
    assert psnr_y(ref, trt_up(lr)) > 45
    plans = sorted(cache.glob("*.plan"))
    assert plans, f"no plan cached in {cache}"
    mtimes = [p.stat().st_mtime for p in plans]
    Upscaler("srgan-x4", backend="tensorrt", device="cuda")
    assert sorted(cache.glob("*.plan")) == plans and [p.stat().st_mtime for p in plans] == mtimes


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


def _torch_tensorrt_reason() -> str | None:
    from rtsr.backends.torch_tensorrt_route import torch_tensorrt_unavailable_reason

    return _trt_reason() or torch_tensorrt_unavailable_reason()


@pytest.mark.skipif(_torch_tensorrt_reason() is not None,
                    reason=f"torch-tensorrt route unavailable: {_torch_tensorrt_reason()}")
def test_torch_tensorrt_route_matches_torch(photo: np.ndarray) -> None:
    from rtsr.backends.tensorrt import ShapeProfile, TensorRTBackend
    from rtsr.models.weights import load_weights, resolve_model

    generator, _ = load_weights(resolve_model("srgan-x4-lite"))
    backend = TensorRTBackend(generator, torch.device("cuda"), ShapeProfile((1, 16, 16), (1, 96, 128), (2, 128, 128)),
                              route="torch-tensorrt")
    assert "fp16-tt" in backend.plan_path.name
    lr = torch.from_numpy(np.ascontiguousarray(photo[:96, :128])).permute(2, 0, 1)[None].float().div(255).cuda()
    with torch.no_grad():
        ref = generator.cuda().eval()(lr).clamp(0, 1)
    out = backend.run(lr).float()
    torch.cuda.synchronize()
    assert out.shape == ref.shape
    assert 10 * np.log10(1 / torch.mean((out - ref) ** 2).item()) > 45
