"""The shipped weights: the card's numbers reproduce, and they beat bicubic by the stated floors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtsr.models.weights import load_weights, read_card, shipped_models
from rtsr.quality import downscale_image, psnr_y, ssim_y

pytest.importorskip("skimage")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from train.data import load_split  # noqa: E402
from train.evaluate import compressed_metrics, per_photo_gains  # noqa: E402

# held-out PSNR-Y gain over bicubic that the shipped weights must keep, below what each measured
# (srgan-x4-clean +1.64, srgan-x4 +1.55, lite +1.37, srgan-x4-steady +0.80: it trades gain for steadiness)
FLOOR_DB = {"srgan-x4-clean": 1.5, "srgan-x4": 1.4, "srgan-x4-lite": 1.2, "srgan-x4-steady": 0.7}
# the same on LR sent through H.264 at CRF 23, as video reaches rtsr (train/evaluate.py); the
# clean-trained models before the H.264 cycles measured +0.22 dB here; now srgan-x4 +0.62, lite
# +0.51, steady +0.45, and srgan-x4-clean, trained without H.264, +0.47.
H264_CRF23_FLOOR_DB = {"srgan-x4-clean": 0.4, "srgan-x4": 0.5, "srgan-x4-lite": 0.4, "srgan-x4-steady": 0.4}
# the models for pictures (srgan-x4-clean is the picture default, srgan-x4 the one for compressed
# sources, the lite one the real-time pick): no photo below bicubic. srgan-x4-steady trades detail
# for steadiness in video (chelsea -0.04 dB).
PICTURE_MODELS = ("srgan-x4-clean", "srgan-x4", "srgan-x4-lite")


@pytest.mark.parametrize("name", sorted(FLOOR_DB))
def test_card_reproduces_and_beats_bicubic(name: str) -> None:
    """The card's held-out numbers reproduce and beat bicubic; a picture model may also not lose to
    bicubic on any one photo (by more than 0.05 dB, issue 17): a mean gain can hide one it does worse
    on (srgan-x4 once lost 1.5 dB on a smooth storm sky)."""
    models = shipped_models()
    assert name in models, f"{name} is not shipped in engines/"
    generator, card = load_weights(models[name])
    measured = per_photo_gains(generator, load_split("heldout"))
    assert abs(measured["psnr_y"] - card.metrics["psnr_y"]) <= 0.05
    assert measured["psnr_y"] - card.metrics["bicubic"]["psnr_y"] >= FLOOR_DB[name]
    assert measured["ssim_y"] > card.metrics["bicubic"]["ssim_y"]
    assert read_card(models[name]).kind == "psnr"
    if name in PICTURE_MODELS:
        assert min(measured["gain_per_photo_db"].values()) >= -0.05, measured["gain_per_photo_db"]


@pytest.mark.parametrize("name", sorted(H264_CRF23_FLOOR_DB))
def test_beats_bicubic_on_h264_compressed_input(name: str) -> None:
    generator, card = load_weights(shipped_models()[name])
    measured = compressed_metrics(generator, load_split("heldout"), crfs=(23,))["h264_crf23"]
    # x264's output may differ a little between FFmpeg builds; the card was measured with PyAV's
    assert abs(measured["psnr_y"] - card.metrics["h264_crf23"]["psnr_y"]) <= 0.1
    assert measured["psnr_y"] - measured["bicubic"]["psnr_y"] >= H264_CRF23_FLOOR_DB[name]


def test_cli_default_model_beats_bicubic_on_an_unseen_photo(tmp_path: Path) -> None:
    """`rtsr upscale photo.png` with the default model on a held-out photo, as a user would."""
    truth = load_split("heldout")["grace_hopper"]
    truth = truth[: truth.shape[0] // 4 * 4, : truth.shape[1] // 4 * 4]
    lr = downscale_image(truth, 4)
    src = tmp_path / "photo.png"
    cv2.imwrite(str(src), cv2.cvtColor(lr, cv2.COLOR_RGB2BGR))
    proc = subprocess.run([sys.executable, "-m", "rtsr", "upscale", str(src), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    sr = cv2.cvtColor(cv2.imread(str(tmp_path / "photo_x4.png")), cv2.COLOR_BGR2RGB)
    bicubic = cv2.resize(lr, (truth.shape[1], truth.shape[0]), interpolation=cv2.INTER_CUBIC)
    assert sr.shape == truth.shape
    assert psnr_y(truth, sr, 4) > psnr_y(truth, bicubic, 4) + 0.5
    assert ssim_y(truth, sr, 4) > ssim_y(truth, bicubic, 4)
    assert np.abs(sr.astype(int) - truth.astype(int)).mean() < np.abs(bicubic.astype(int) - truth.astype(int)).mean()


@pytest.mark.parametrize("name", sorted(FLOOR_DB))
def test_temporal_metric_reproduces(name: str) -> None:
    """The card's flicker numbers (held-out photos panned by a known sub-pixel motion, clean and
    through x264 with P/B frames) reproduce; the video default flickers no more than bicubic
    (issue 17: a model that does, does not ship as the default). srgan-x4, the lite model and
    srgan-x4-clean measure 22%, 39% and 46% above bicubic through H.264: they are for pictures,
    or chosen by name. The video default
    is measured on both kinds; the others on H.264 CRF 23 only (how video reaches them), which
    halves this test's minute per 16-block model in CI."""
    from rtsr.settings import load_settings
    from train.evaluate import generator_temporal_metrics

    generator, card = load_weights(shipped_models()[name])
    crfs = (None, 23) if name == load_settings().model else (23,)
    measured = generator_temporal_metrics(generator, load_split("heldout"), crfs)
    assert len(measured) == len(crfs)
    for key, m in measured.items():
        assert abs(m["flicker"] - card.metrics["temporal"][key]["flicker"]) <= 0.05, key
        assert abs(m["bicubic"] - card.metrics["temporal"][key]["bicubic"]) <= 0.05, key
        if name == load_settings().model:
            assert m["flicker"] <= m["bicubic"], key


@pytest.mark.parametrize("name", sorted(FLOOR_DB))
def test_wallpaper_heldout_gains_reproduce(name: str) -> None:
    """Each held-out photo of the Debian wallpaper packages: the card's gain over bicubic reproduces."""
    from train.data import debs_cached

    if not debs_cached():
        pytest.skip("the pinned Debian packages are not cached (python -m train.data fetches them)")
    generator, card = load_weights(shipped_models()[name])
    if "heldout_debs" not in card.metrics:
        pytest.skip(f"{name}'s card has no wallpaper held-out numbers")
    measured = per_photo_gains(generator, load_split("heldout_debs", debs=True))
    for photo, gain in card.metrics["heldout_debs"]["gain_per_photo_db"].items():
        assert abs(measured["gain_per_photo_db"][photo] - gain) <= 0.05, photo
        if name in PICTURE_MODELS:
            assert measured["gain_per_photo_db"][photo] >= -0.05, photo


@pytest.mark.parametrize("name", sorted(FLOOR_DB))
def test_no_stripes_on_smooth_sand(name: str) -> None:
    """The 16-block models' long cycles drew horizontal stripes on the smooth sand of the held-out
    wallpaper `bridge` (a 256 x 256 crop: 26.8-30.6 dB against bicubic's 36.0) while their mean
    gains rose: a picture artefact a mean hides. Shipped models stay within 1 dB of bicubic there."""
    from train.data import debs_cached
    from train.evaluate import inference_form, sr_image

    if not debs_cached():
        pytest.skip("the pinned Debian packages are not cached (python -m train.data fetches them)")
    hr = load_split("heldout_debs", debs=True)["bridge"]
    y, x, pad, size = 2048, 256, 64, 256  # the sand, with 64 px of context each side
    crop = hr[y - pad:y + size + pad, x - pad:x + size + pad]
    lr = downscale_image(crop, 4)
    bicubic = cv2.resize(lr, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_CUBIC)
    generator, _ = load_weights(shipped_models()[name])
    sr = sr_image(inference_form(generator), lr)
    inner = (slice(pad, pad + size), slice(pad, pad + size))
    assert psnr_y(crop[inner], sr[inner], 0) >= psnr_y(crop[inner], bicubic[inner], 0) - 1.0
