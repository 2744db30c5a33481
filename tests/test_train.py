"""Training code: a few real steps of both stages, resume determinism, the VGG19 loader."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rtsr.models.weights import load_weights

pytest.importorskip("skimage")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from train.data import HELDOUT, PatchSampler, h264_roundtrip, load_split  # noqa: E402
from train.train import TrainConfig, run  # noqa: E402
from train.vgg import PHI_54_INDEX, VGG19Features  # noqa: E402


def tiny_config(**overrides) -> TrainConfig:
    base = dict(name="t", model="srgan-x4-lite", steps=4, batch=2, hr_patch=48, eval_every=1000,
                checkpoint_every=2, lr=1e-3, lr_final=1e-3, wheel_photos=False)
    return TrainConfig(**{**base, **overrides})


def test_heldout_photos_never_in_training_split() -> None:
    train, heldout = load_split("train"), load_split("heldout")
    assert set(heldout) == HELDOUT and not set(train) & HELDOUT and len(train) >= 10


def test_patch_sampler_shapes_and_seed() -> None:
    images = list(load_split("train").values())[:3]
    a, b = PatchSampler(images, 96, 4, seed=1), PatchSampler(images, 96, 4, seed=1)
    lr, hr = a.batch(5)
    assert lr.shape == (5, 3, 24, 24) and hr.shape == (5, 3, 96, 96)
    assert torch.equal(lr, b.batch(5)[0])
    assert torch.equal(lr * 255, (lr * 255).round())  # 8-bit like a decoded frame


def test_resume_continues_exactly(tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    straight, _ = load_weights(run(tiny_config(name="straight"), False, None, cpu, tmp_path))
    run(tiny_config(name="split", steps=2), False, None, cpu, tmp_path)
    resumed, card = load_weights(run(tiny_config(name="split"), True, None, cpu, tmp_path))
    for k, v in straight.state_dict().items():
        assert torch.allclose(v, resumed.state_dict()[k], atol=1e-6), k
    assert card.training["steps"] == 4 and (tmp_path / "split" / "log.csv").read_text().count("\n") == 4


def test_gan_stage_runs_and_says_which_content_loss(tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    first = run(tiny_config(name="mse", steps=1, precision="bf16"), False, None, cpu, tmp_path)
    final = run(tiny_config(name="gan", stage="gan", steps=2, init_from=str(first), kind="gan", precision="bf16"),
                False, None, cpu, tmp_path)
    generator, card = load_weights(final)
    assert card.kind == "gan" and "feature matching" in card.training["content_loss"]
    assert card.training["precision"] == "bf16"
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in generator.parameters())
    assert card.training["adversarial_weight"] == 1e-3


def test_vgg19_loads_torchvision_format_weights(tmp_path: Path) -> None:
    source = VGG19Features()
    state = {k: v for k, v in source.state_dict().items() if k.startswith("features.")}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a full torchvision file has more; it is ignored
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    loaded = VGG19Features.from_torchvision_weights(path)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(loaded(x), source(x))
    assert len(loaded.features) == PHI_54_INDEX + 1 and not any(p.requires_grad for p in loaded.parameters())
    # the GAN stage with --vgg-weights uses phi(5,4) as its content loss
    cpu = torch.device("cpu")
    first = run(tiny_config(name="mse", steps=1), False, None, cpu, tmp_path)
    final = run(tiny_config(name="vgg", stage="gan", steps=1, init_from=str(first), kind="gan", precision="bf16"),
                False, path, cpu, tmp_path)
    assert load_weights(final)[1].training["content_loss"] == "VGG19 phi(5,4)"


def test_wheel_photos_read_from_a_cached_wheel(tmp_path: Path) -> None:
    import bz2
    import zipfile

    import cv2
    import numpy as np

    from train.data import WheelSource, _read_wheel_photo

    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    with zipfile.ZipFile(tmp_path / "pkg-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("pkg/photo.png", cv2.imencode(".png", rgb[..., ::-1])[1].tobytes())
        zf.writestr("pkg/raw.dat", bz2.compress(rgb.tobytes()))
    png = _read_wheel_photo(WheelSource("a", "pkg==1.0", "pkg/photo.png", "x"), tmp_path)
    raw = _read_wheel_photo(WheelSource("b", "pkg==1.0", "pkg/raw.dat", "x", raw_shape=(6, 8, 3)), tmp_path)
    assert np.array_equal(png[..., ::-1], rgb) and np.array_equal(raw[..., ::-1], rgb)  # both BGR


def test_chroma_subsampling_keeps_luma_and_flattens_chroma_per_2x2() -> None:
    from train.data import subsample_chroma

    rgb = torch.rand(2, 3, 8, 10, generator=torch.Generator().manual_seed(0))
    out = subsample_chroma(rgb)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert out.shape == rgb.shape
    assert ((out * luma).sum(1) - (rgb * luma).sum(1)).abs().mean() < 0.01  # luma kept, but where clamped
    flat = torch.rand(1, 3, 1, 1).expand(1, 3, 8, 8)
    assert torch.allclose(subsample_chroma(flat), flat, atol=1e-5)  # flat colour passes unchanged
    assert not torch.allclose(out, rgb, atol=0.01)  # chroma detail is gone


def test_h264_degradation_is_seeded_and_stronger_at_higher_crf(photo: np.ndarray) -> None:
    from rtsr.quality import psnr_y

    img = np.ascontiguousarray(photo[:64, :96])
    mild, heavy = h264_roundtrip(img, 18), h264_roundtrip(img, 40)
    assert mild.shape == img.shape and mild.dtype == np.uint8
    assert psnr_y(img, mild) > psnr_y(img, heavy) + 3
    lr, hr = PatchSampler([photo], 64, 4, seed=1, h264_share=1.0).batch(4)
    again, _ = PatchSampler([photo], 64, 4, seed=1, h264_share=1.0).batch(4)
    clean_lr, clean_hr = PatchSampler([photo], 64, 4, seed=1).batch(4)
    assert torch.equal(lr, again)  # the seed fixes the stream, encoder included
    assert torch.equal(hr, clean_hr) and not torch.equal(lr, clean_lr)
