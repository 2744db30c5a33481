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

from train.data import (HELDOUT, PatchSampler, gaussian_blur, h264_roundtrip, load_split, shift_consistency,  # noqa: E402
                        yuv420_roundtrip)
from train.train import TrainConfig, _with_bicubic_skip, _with_more_blocks, run  # noqa: E402
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


def test_shifted_pairs_see_one_scene_at_two_subpixel_phases() -> None:
    """The second half of a pair batch is the first half's scenes moved by the returned shift:
    the HR pairs agree exactly after undoing it (shift_consistency 0), their LR do not (a sub-pixel
    phase), and a shift undone the wrong way round is seen."""
    images = list(load_split("train").values())[:3]
    lr, hr, shifts = PatchSampler(images, 48, 4, seed=3).shifted_pairs(6)
    assert lr.shape == (12, 3, 12, 12) and hr.shape == (12, 3, 48, 48) and len(shifts) == 6
    assert all(0 <= dy < 4 and 0 <= dx < 4 and (dy, dx) != (0, 0) for dy, dx in shifts)
    assert shift_consistency(hr, shifts, border=4).item() == 0.0
    assert any(dy != dx for dy, dx in shifts)
    assert shift_consistency(hr, [(dx, dy) for dy, dx in shifts], border=4).item() > 1e-4
    assert shift_consistency(hr, [(0, 0)] * 6, border=4).item() > 1e-4
    bicubic = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic")
    assert shift_consistency(bicubic, shifts, border=4).item() > 1e-5  # LR phases differ


def test_yuv420_share_hands_over_what_the_video_path_converts() -> None:
    """yuv420_share=1: every LR patch is rtsr's own 8-bit 4:2:0 round trip of the bicubic LR, left
    off the 8-bit RGB grid as the video path hands it over; luma close to the plain LR's, chroma
    coarser. The HR is the same as without it (the share draws after the crops)."""
    from rtsr.quality import downscale

    images = list(load_split("train").values())[:3]
    plain_lr, hr = PatchSampler(images, 48, 4, seed=7).batch(4)
    video_lr, video_hr = PatchSampler(images, 48, 4, seed=7, yuv420_share=1.0).batch(4)
    assert torch.equal(hr, video_hr)
    assert torch.allclose(video_lr, yuv420_roundtrip(downscale(hr, 4)), atol=1e-6)
    assert not torch.equal(video_lr * 255, (video_lr * 255).round())
    luma = lambda t: 0.299 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2]
    # luma moves by its 8-bit limited-range step, but where the new chroma drives a channel past
    # 0 or 1 (clipped): bounded on the mean (measured 0.2-0.3 code values)
    moved = (luma(video_lr) - luma(plain_lr)).abs().mean()
    assert moved < 0.6 / 255, moved * 255
    assert (video_lr - plain_lr).abs().max() > 4 / 255  # chroma edges are coarser


def test_hr_blur_softens_the_picked_share_of_hr_patches() -> None:
    """hr_blur=1 blurs every HR patch (less detail, the same mean level), hr_blur=0 none; the LR
    is made from the blurred HR, so the pair stays consistent."""
    images = list(load_split("train").values())[:3]
    sharp_lr, sharp = PatchSampler(images, 48, 4, seed=5).batch(4)
    soft_lr, soft = PatchSampler(images, 48, 4, seed=5, hr_blur=1.0, hr_blur_sigma=(2.0, 2.0)).batch(4)
    detail = lambda t: (t[..., 1:, :] - t[..., :-1, :]).abs().mean().item()
    assert detail(soft) < 0.6 * detail(sharp)
    assert abs(soft.mean().item() - sharp.mean().item()) < 0.01
    lr_of_soft = torch.nn.functional.avg_pool2d(soft, 4)
    assert (lr_of_soft - soft_lr).abs().mean() < (lr_of_soft - sharp_lr).abs().mean()
    flat = torch.full((3, 20, 20), 77, dtype=torch.uint8)
    assert torch.equal(gaussian_blur(flat, 1.5), flat)  # a flat patch is left as it is, edges too


def test_add_skip_starts_as_bicubic_and_keeps_the_body() -> None:
    from rtsr.models.config import GeneratorConfig
    from rtsr.models.srgan import Generator

    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(name="plain", num_blocks=2, channels=8)).eval()  # no skip, as before the skip cycles
    skipped = _with_bicubic_skip(generator).eval()
    assert skipped.config.skip == "bicubic"
    x = torch.rand(1, 3, 16, 16)
    bicubic = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    assert torch.equal(skipped(x), bicubic)
    for name, v in generator.state_dict().items():
        if not name.startswith("tail."):
            assert torch.equal(v, skipped.state_dict()[name]), name
    with pytest.raises(SystemExit, match="skip already"):
        _with_bicubic_skip(skipped)


def test_add_blocks_keeps_the_output_and_trains_the_new_blocks(tmp_path: Path) -> None:
    from rtsr.models.config import GeneratorConfig
    from rtsr.models.srgan import Generator

    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(name="small", num_blocks=2, channels=8, skip="bicubic"))
    with torch.no_grad():  # trained-looking BatchNorm statistics and shifts, not the init's 0 / 1
        for bn in (m for m in generator.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.1, 0.1), bn.running_var.uniform_(0.5, 2), bn.bias.uniform_(-0.1, 0.1)
    deeper = _with_more_blocks(generator, 3)
    assert deeper.config.num_blocks == 5 and len(deeper.body) == 5
    x = torch.rand(2, 3, 12, 12)
    for mode in ("eval", "train"):  # the identity holds with batch statistics too
        getattr(generator, mode)(), getattr(deeper, mode)()
        assert torch.allclose(deeper(x), generator(x), atol=1e-6), mode
    deeper(x).square().mean().backward()
    assert deeper.body[4].bn2.weight.grad.abs().sum() > 0  # the new blocks learn from the first step
    cpu = torch.device("cpu")
    with pytest.raises(SystemExit, match="need init_from"):
        run(tiny_config(name="deeper", add_blocks=2), False, None, cpu, tmp_path)
    with pytest.raises(SystemExit, match="0 or more"):
        run(tiny_config(name="shallower", add_blocks=-1), False, None, cpu, tmp_path)


def test_temporal_weight_adds_the_shift_loss(tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    run(tiny_config(name="steady", temporal_weight=0.5, batch=4), False, None, cpu, tmp_path)
    first = (tmp_path / "steady" / "log.csv").read_text().splitlines()[0].split(",")  # step, loss_g, mse, shift
    loss_g, mse, shift = map(float, first[1:4])
    assert shift > 0 and loss_g == pytest.approx(mse + 0.5 * shift, rel=1e-4)
    with pytest.raises(SystemExit, match="MSE-stage"):
        run(tiny_config(name="bad", stage="gan", temporal_weight=0.5), False, None, cpu, tmp_path)


def test_pixel_loss_l1_is_the_mean_absolute_error(tmp_path: Path) -> None:
    """pixel_loss: l1 trains on |sr - hr| (the logged loss is the L1 one, not the MSE) and the card says so."""
    cpu = torch.device("cpu")
    final = run(tiny_config(name="l1", steps=1, pixel_loss="l1"), False, None, cpu, tmp_path)
    first = (tmp_path / "l1" / "log.csv").read_text().splitlines()[0].split(",")  # step, loss_g, l1
    mse_final = run(tiny_config(name="l2", steps=1), False, None, cpu, tmp_path)
    mse_first = (tmp_path / "l2" / "log.csv").read_text().splitlines()[0].split(",")
    # one seed, one first batch and the same start: for residuals below 1, MSE <= L1 <= sqrt(MSE)
    l1, mse = float(first[1]), float(mse_first[1])
    assert l1 == float(first[2]) and 1.2 * mse < l1 < 0.9 * mse ** 0.5
    assert load_weights(final)[1].training["content_loss"] == "L1"
    assert load_weights(mse_final)[1].training["content_loss"] == "MSE"
    with pytest.raises(SystemExit, match="pixel_loss"):
        run(tiny_config(name="bad-l1", pixel_loss="l2"), False, None, cpu, tmp_path)
    with pytest.raises(SystemExit, match="pixel_loss"):
        run(tiny_config(name="bad-gan", stage="gan", pixel_loss="l1"), False, None, cpu, tmp_path)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    """The 4-step run in one go, which the split runs below must reproduce (run once for both)."""
    generator, _ = load_weights(run(tiny_config(name="straight"), False, None, torch.device("cpu"),
                                    tmp_path_factory.mktemp("straight")))
    return generator


def test_resume_continues_exactly(tmp_path: Path, straight: torch.nn.Module) -> None:
    cpu = torch.device("cpu")
    run(tiny_config(name="split", steps=2), False, None, cpu, tmp_path)
    resumed, card = load_weights(run(tiny_config(name="split"), True, None, cpu, tmp_path))
    for k, v in straight.state_dict().items():
        assert torch.allclose(v, resumed.state_dict()[k], atol=1e-6), k
    assert card.training["steps"] == 4 and (tmp_path / "split" / "log.csv").read_text().count("\n") == 4


def test_stop_at_ends_early_on_the_full_runs_schedule(tmp_path: Path, straight: torch.nn.Module) -> None:
    """A run stopped at `stop_at` is the full run's snapshot there: resumed to the end, it is the full run."""
    cpu = torch.device("cpu")
    _, early = load_weights(run(tiny_config(name="early", stop_at=2), False, None, cpu, tmp_path))
    assert early.training["steps"] == 2 and "over 4 steps, stopped at 2" in early.training["optimizer"]
    resumed, _ = load_weights(run(tiny_config(name="early"), True, None, cpu, tmp_path))
    for k, v in straight.state_dict().items():
        assert torch.allclose(v, resumed.state_dict()[k], atol=1e-6), k


def test_ema_ships_the_moving_average_across_a_resume(tmp_path: Path) -> None:
    """With ema_decay the shipped weights are the average, not the last step's: after one step the
    step's weights, after a resumed second step decay x those + (1 - decay) x the second step's."""
    cpu = torch.device("cpu")
    first, card = load_weights(run(tiny_config(name="ema", stop_at=1, ema_decay=0.25), False, None, cpu, tmp_path))
    step1 = torch.load(tmp_path / "ema" / "last.ckpt", weights_only=True)["generator"]
    assert card.training["ema_decay"] == 0.25
    for k, v in first.state_dict().items():
        assert torch.equal(v, step1[k]), k
    second, _ = load_weights(run(tiny_config(name="ema", stop_at=2, ema_decay=0.25), True, None, cpu, tmp_path))
    step2 = torch.load(tmp_path / "ema" / "last.ckpt", weights_only=True)["generator"]
    moved = 0
    for k, v in second.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, 0.25 * step1[k] + 0.75 * step2[k], atol=1e-6), k
            moved += not torch.allclose(v, step2[k], atol=1e-6)
    assert moved > 0  # the average is not the last step's weights
    with pytest.raises(SystemExit, match="ema_decay"):
        run(tiny_config(name="bad-ema", ema_decay=1.0), False, None, cpu, tmp_path)


def test_gan_stage_runs_and_says_which_content_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("train.train.native_bf16", lambda: (True, "test"))  # the bf16 path, on any CPU
    cpu = torch.device("cpu")
    first = run(tiny_config(name="mse", steps=1, precision="bf16"), False, None, cpu, tmp_path)
    final = run(tiny_config(name="gan", stage="gan", steps=2, init_from=str(first), kind="gan", precision="bf16"),
                False, None, cpu, tmp_path)
    generator, card = load_weights(final)
    assert card.kind == "gan" and "feature matching" in card.training["content_loss"]
    assert card.training["precision"] == "bf16"
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in generator.parameters())
    assert card.training["adversarial_weight"] == 1e-3


def test_bf16_on_a_cpu_that_emulates_it_trains_in_fp32(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Emulated bf16 made a training step 12x slower than fp32: the run falls back, says so, and the
    card records the precision that ran."""
    monkeypatch.setattr("train.train.native_bf16", lambda: (False, "no avx512_bf16 (test)"))
    with caplog.at_level("WARNING", logger="train"):
        final = run(tiny_config(name="emulated", steps=1, precision="bf16"), False, None, torch.device("cpu"), tmp_path)
    assert load_weights(final)[1].training["precision"] == "fp32"
    assert "without native bf16 (no avx512_bf16 (test))" in caplog.text and "training in fp32" in caplog.text


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


def test_h264_degradation_keeps_the_levels() -> None:
    """The round trip through x264 goes through rtsr's own YUV conversion: no level shift (via
    libswscale's rgb24 <-> yuv420p it was -0.90..-1.12 Y levels on this gradient at CRF 16-32,
    and the models trained on it brightened their output; now -0.22..+0.19)."""
    from rtsr.quality import rgb_to_y

    x = np.linspace(0, 1, 128)
    img = (np.stack([np.outer(x, x), np.outer(1 - x, x), np.outer(x, 1 - x)], -1) * 255).astype(np.uint8)
    shifts = [float((rgb_to_y(h264_roundtrip(img, crf)) - rgb_to_y(img)).mean()) for crf in (18, 24, 30)]
    assert max(map(abs, shifts)) < 0.35 and abs(np.mean(shifts)) < 0.15
    for level in (0, 16, 40, 235, 255):
        flat = np.full((32, 32, 3), level, np.uint8)
        assert np.array_equal(h264_roundtrip(flat, 23), flat)


def test_h264_clip_round_trip_keeps_frame_order(photo: np.ndarray) -> None:
    from rtsr.quality import psnr_y
    from train.data import h264_roundtrip_frames

    frames = [np.ascontiguousarray(photo[8 * t:8 * t + 64, 4 * t:4 * t + 96]) for t in range(6)]
    out = h264_roundtrip_frames(frames, 23)
    assert len(out) == 6 and out[0].shape == frames[0].shape
    for t, frame in enumerate(out):  # each decoded frame is closest to its own source frame
        assert max(range(6), key=lambda s: psnr_y(frames[s], frame)) == t


def _fake_deb(tmp_path: Path, requirement: str, member: str, data: bytes) -> Path:
    """A real (tiny) .deb built with dpkg-deb, named as apt-get download names it."""
    import subprocess

    package, version = requirement.split("=")
    root = tmp_path / "build"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
                                             "Maintainer: t <t@t>\nDescription: t\n")
    (root / member).parent.mkdir(parents=True)
    (root / member).write_bytes(data)
    debs = tmp_path / "debs"
    debs.mkdir()
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(debs / f"{package}_{version}_all.deb")],
                   check=True, capture_output=True)
    return debs


def test_deb_photos_read_from_a_cached_package(tmp_path: Path) -> None:
    import shutil

    import cv2

    from train.data import DebSource, _read_deb_photo

    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed (not a Debian system)")
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    member = "usr/share/backgrounds/p.png"
    debs = _fake_deb(tmp_path, "pkg=1.0-1", member, cv2.imencode(".png", rgb[..., ::-1])[1].tobytes())
    bgr = _read_deb_photo(DebSource("p", "pkg=1.0-1", member, "x"), debs)
    assert np.array_equal(bgr[..., ::-1], rgb)
    assert (debs / "pkg_1.0-1" / member).is_file()  # unpacked once, read from there next time


def test_deb_photos_are_the_listed_files_with_their_licences() -> None:
    """Every listed photo is in its pinned package, and the package's copyright file gives the
    licence the manifest states for it; the new held-out photos never reach training."""
    from train.data import DEB_DIR, DEB_HELDOUT, DEB_SOURCES, debs_cached

    if not debs_cached():
        pytest.skip("the pinned Debian packages are not cached (python -m train.data fetches them)")
    assert DEB_HELDOUT < {s.name for s in DEB_SOURCES}
    for src in DEB_SOURCES:
        root = DEB_DIR / src.package.replace("=", "_")
        assert (root / src.member).is_file(), src.member
        package = src.package.split("=")[0]
        copyright_text = (root / "usr/share/doc" / package / "copyright").read_text()
        licence_id = src.licence.split(" ")[0]
        file_key = src.member.split("/backgrounds/")[1].removeprefix("mate/")
        stanza = copyright_text[copyright_text.index(Path(file_key).name):]
        assert stanza.split("License:")[1].split()[0] == licence_id, src.name
    heldout_debs = load_split("heldout_debs", debs=True)
    assert set(heldout_debs) == DEB_HELDOUT
    assert not set(load_split("train", debs=True)) & (DEB_HELDOUT | HELDOUT)


def test_flicker_is_zero_for_the_ground_truth_and_sees_added_flicker(photo: np.ndarray) -> None:
    """The temporal metric: the ground truth of a panned clip is perfectly steady (0), a clip
    with a little noise added per frame is not, and neither is a clip panned by another motion."""
    from train.evaluate import flicker, panned_clip

    clip = panned_clip(photo, 4, frames=5, size=(160, 96))
    assert len(clip) == 5 and clip[0].shape == (96, 160, 3)
    assert flicker(clip) == 0.0
    rng = np.random.default_rng(0)
    noisy = [np.clip(f + rng.normal(0, 2, f.shape), 0, 255).astype(np.uint8) for f in clip]
    assert 1.0 < flicker(noisy) < 4.0
    assert flicker(panned_clip(photo, 4, frames=5, size=(160, 96), pan=(3, 1))) > 1.0


def test_temporal_metrics_of_bicubic_and_a_steadier_upscaler(photo: np.ndarray) -> None:
    """Bicubic of a clip panned by sub-pixel LR steps flickers (aliasing crawls); an upscaler
    that blurs more flickers less; through H.264 the clip flickers more than clean."""
    import cv2

    from train.evaluate import temporal_metrics

    def blurry(lr: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(cv2.resize(lr, (lr.shape[1] * 4, lr.shape[0] * 4), interpolation=cv2.INTER_CUBIC),
                                (0, 0), 3)

    images = {"p": np.ascontiguousarray(photo[:200, :280])}
    m = temporal_metrics(blurry, images, 4, crfs=(None, 30))
    assert set(m) == {"clean", "h264_crf30"}
    assert 0 < m["clean"]["flicker"] < m["clean"]["bicubic"]
    assert m["h264_crf30"]["bicubic"] > m["clean"]["bicubic"]


def test_soup_is_the_weighted_mean_of_its_ingredients(tmp_path: Path) -> None:
    """train/soup.py: every parameter and BatchNorm statistic is the normalised weighted mean; the
    card names each ingredient; another architecture is refused."""
    from rtsr.models.weights import ModelCard, save_weights
    from tests.conftest import make_generator
    from train.soup import Ingredient, SoupConfig, mix

    a, b, other = make_generator(seed=1), make_generator(seed=2), make_generator(blocks=3, seed=3)
    for name, g in (("a", a), ("b", b), ("other", other)):
        save_weights(tmp_path / f"{name}.pt", g, ModelCard(name=name, config=g.config.to_dict(),
                                                            training={"steps": 7}))
    recipe = tmp_path / "soup.yaml"
    recipe.write_text("name: ab\ningredients:\n  - {weights: a.pt, weight: 3}\n  - {weights: b.pt, weight: 1}\n")
    soup, card = mix(SoupConfig.load(recipe), root=tmp_path)
    sa, sb = a.state_dict(), b.state_dict()
    for key, value in soup.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.75 * sa[key] + 0.25 * sb[key])
        assert value.dtype == sa[key].dtype
    assert sa["body_bn.running_var"].ne(sb["body_bn.running_var"]).any()  # the statistics differ, so were mixed
    assert [(i["model"], i["weight"], i["training"]) for i in card.training["ingredients"]] == [
        ("a", 0.75, {"steps": 7}), ("b", 0.25, {"steps": 7})]
    assert card.training["stage"] == "soup" and card.name == "ab"
    with pytest.raises(SystemExit, match="architecture"):
        mix(SoupConfig("x", [Ingredient("a.pt", 1), Ingredient("other.pt", 1)]), root=tmp_path)
    recipe.write_text("name: one\ningredients:\n  - {weights: a.pt, weight: 1}\n")
    with pytest.raises(SystemExit, match="two or more"):
        SoupConfig.load(recipe)
