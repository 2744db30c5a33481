"""The shipped weights: the card's numbers reproduce, and they beat bicubic by the stated floors."""
from __future__ import annotations

import shutil
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


def _cli_upscale(truth: np.ndarray, tmp_path: Path, args: list[str], env: dict[str, str] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(`rtsr upscale`'s output, bicubic's) for `truth`'s x4 LR written as a PNG (truth cropped to
    a multiple of 4 by the caller), as a user would run it."""
    lr = downscale_image(truth, 4)
    src = tmp_path / "photo.png"
    cv2.imwrite(str(src), cv2.cvtColor(lr, cv2.COLOR_RGB2BGR))
    proc = subprocess.run([sys.executable, "-m", "rtsr", "upscale", str(src), "--device", "cpu", *args],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    sr = cv2.cvtColor(cv2.imread(str(tmp_path / "photo_x4.png")), cv2.COLOR_BGR2RGB)
    return sr, cv2.resize(lr, (truth.shape[1], truth.shape[0]), interpolation=cv2.INTER_CUBIC)


def test_cli_default_model_beats_bicubic_on_an_unseen_photo(tmp_path: Path) -> None:
    """`rtsr upscale photo.png` with the default model on a held-out photo, as a user would."""
    truth = load_split("heldout")["grace_hopper"]
    truth = truth[: truth.shape[0] // 4 * 4, : truth.shape[1] // 4 * 4]
    sr, bicubic = _cli_upscale(truth, tmp_path, [])
    assert sr.shape == truth.shape
    assert psnr_y(truth, sr, 4) > psnr_y(truth, bicubic, 4) + 0.5
    assert ssim_y(truth, sr, 4) > ssim_y(truth, bicubic, 4)
    assert np.abs(sr.astype(int) - truth.astype(int)).mean() < np.abs(bicubic.astype(int) - truth.astype(int)).mean()


@pytest.mark.parametrize("backend", ["auto", "openvino-bf16"])
def test_cli_reproduces_the_card_on_a_smooth_photo(tmp_path: Path, backend: str) -> None:
    """`rtsr upscale` with what `auto` picks here, and with OpenVINO bf16 (a fresh cache folder:
    compiled, not imported), gains on the smooth held-out `storm` sky (bicubic 49 dB) what
    srgan-x4's fp32 card says: there a backend's rounding shows first. OpenVINO bf16 with the
    whole model in bf16 gained +0.01 dB against the card's +0.29 (aqua 1.43 against 1.64)."""
    import os

    from rtsr.devices import native_bf16
    from train.data import debs_cached

    if not debs_cached():
        pytest.skip("the pinned Debian packages are not cached (python -m train.data fetches them)")
    args, env = [], None
    if backend == "openvino-bf16":
        pytest.importorskip("openvino")
        if not native_bf16()[0]:
            pytest.skip("this CPU has no native bf16: OpenVINO runs f32 there")
        args, env = ["--backend", "openvino", "--precision", "bf16"], {**os.environ, "RTSR_CACHE_DIR": str(tmp_path / "cache")}
    truth = load_split("heldout_debs", debs=True)["storm"]
    truth = truth[: truth.shape[0] // 4 * 4, : truth.shape[1] // 4 * 4]
    sr, bicubic = _cli_upscale(truth, tmp_path, ["--model", "srgan-x4", *args], env)
    card = read_card(shipped_models()["srgan-x4"]).metrics["heldout_debs"]["gain_per_photo_db"]["storm"]
    assert abs(psnr_y(truth, sr, 4) - psnr_y(truth, bicubic, 4) - card) <= 0.03


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


def _ffmpeg_first_frame(path: Path, height: int, width: int) -> np.ndarray:
    """`path`'s first frame as RGB, converted by FFmpeg (a referee we did not write) with its accurate
    scaler: swscale's default yuv420p -> rgb24 path is off by about a code value, which alone took a
    4:2:0 round trip of FFmpeg's own of a smooth sky crop to 47 dB (58 dB with these flags)."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-vf", "scale=flags=accurate_rnd+full_chroma_int",
           "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True, timeout=120).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


@pytest.mark.parametrize("name", ["srgan-x4", "srgan-x4-lite"])
def test_video_pipeline_keeps_the_picture_gain(tmp_path: Path, name: str) -> None:
    """A held-out photo's LR as a one-frame lossless 4:4:4 clip (FFmpeg's FFV1) through `upscale_video`
    (lossless output) gains over the bicubic upscale of the frame it was given what the picture
    path gains over bicubic, within 0.1 dB on the mean (issue 17). The clip's 8-bit limited-range
    YUV moves the LR by 0.34 code values rms, which costs bicubic itself up to 0.47 dB (the smooth
    `storm` sky) and the model a little more; the output's luma steps cost such a photo another
    0.2 dB (srgan-x4 measured 1.70 dB on the pictures, 1.64 through the pipeline; `bridge` 4.27 /
    3.97, the most any photo lost)."""
    from rtsr import Upscaler
    from rtsr.video.pipeline import VideoJob, upscale_video
    from rtsr.video.writer import EncodeOptions
    from train.data import debs_cached

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed here (.ci/run installs it)")
    photos = dict(load_split("heldout"))
    if debs_cached():
        photos.update(load_split("heldout_debs", debs=True))
    upscaler = Upscaler(name, device="cpu")
    picture, video = {}, {}
    for photo, hr in photos.items():
        h, w = hr.shape[:2]
        ch, cw = min(h, 512) // 8 * 8, min(w, 768) // 8 * 8  # a centre crop: even LR sides for the clip
        hr = np.ascontiguousarray(hr[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw])
        lr = downscale_image(hr, 4)
        picture[photo] = psnr_y(hr, upscaler(lr), 4) - psnr_y(hr, cv2.resize(lr, (cw, ch), interpolation=cv2.INTER_CUBIC), 4)
        png, clip, out = tmp_path / f"{photo}.png", tmp_path / f"{photo}.mkv", tmp_path / f"{photo}_x4.mkv"
        cv2.imwrite(str(png), cv2.cvtColor(lr, cv2.COLOR_RGB2BGR))
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(png), "-c:v", "ffv1", "-pix_fmt", "yuv444p",
                        str(clip)], check=True, timeout=120)
        assert upscale_video(clip, out, upscaler, VideoJob(encode=EncodeOptions(crf=0))).frames == 1
        given = cv2.resize(_ffmpeg_first_frame(clip, ch // 4, cw // 4), (cw, ch), interpolation=cv2.INTER_CUBIC)
        video[photo] = psnr_y(hr, _ffmpeg_first_frame(out, ch, cw), 4) - psnr_y(hr, given, 4)
    assert len(picture) >= 4
    assert abs(np.mean(list(video.values())) - np.mean(list(picture.values()))) <= 0.1, (picture, video)
    for photo in picture:
        assert video[photo] >= picture[photo] - 0.4, (photo, picture[photo], video[photo])
