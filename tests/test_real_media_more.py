"""More real files nobody on this project made (tests/realmedia.py), each one a defect it found.

A robustness sweep of `rtsr upscale` over packaged samples the suite had not used (Ogg Theora,
VP8 WebM, RealMedia, H.264 in AVI, a cut MPEG-TS, a three-video-track ASF, a JPEG with an EXIF
orientation, a 16-bit APNG) found: empty Theora packets crashed the decoder loop, a Theora picture
at an offset came out 2 px too wide and was rescaled, an H.264 AVI's frames all came one frame
late, an audio track without packets crashed the muxer, Latin-1 tags were a traceback, JPEGs were
not turned as their EXIF orientation says, and a 16-bit APNG was written 8-bit while said 16-bit.
Judged by ffprobe; skipped where a registry is out of reach.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtsr import Upscaler
from rtsr.video.pipeline import default_video_output, upscale_video
from rtsr.video.writer import container_suffix
from tests import realmedia
from tests.test_real_media import audio_packets, ffprobe, upscaler, video_facts  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe (Debian's ffmpeg) is not installed")


def upscale_and_compare(src: Path, tmp_path: Path, up: Upscaler) -> tuple[Path, list[float]]:
    """Upscale `src`; every input frame must be in the output at the input's time, with its SAR
    and every audio packet, in sync. Everything may move by one common offset of a few ms: the
    writer shifts a file whose audio starts before 0 (Vorbis pre-roll at -2.7 ms) to start at 0.
    Returns the output and its frame times, less that offset."""
    dst = tmp_path / default_video_output(src, 4, "libx264").name
    stats = upscale_video(src, dst, up)
    n_in, t_in, sar_in = video_facts(src)
    n_out, t_out, sar_out = video_facts(dst)
    assert stats.frames == n_in == n_out, f"{n_in} frames in, {stats.frames} upscaled, {n_out} in the output"
    assert None not in t_out
    offset = t_out[0] - t_in[0]
    assert 0 <= offset < 0.005, f"the output starts {offset} s after the input"
    for i, (a, b) in enumerate(zip(t_in, t_out)):
        assert b - offset == pytest.approx(a, abs=0.0015), f"frame {i} at {b} s, input at {a} s"
    assert sar_out == sar_in
    a_in, a_out = audio_packets(src), audio_packets(dst)
    assert len(a_out) == len(a_in)
    if a_in:  # the audio moved as much as the video
        assert a_out[0] - a_in[0] == pytest.approx(offset, abs=0.0015)
    return dst, [t - offset for t in t_out]


def test_theora_empty_repeat_packets_keep_every_frame(tmp_path: Path, upscaler: Upscaler) -> None:
    """Ogg Theora codes "show the previous frame again" as an empty packet with a time; handed to
    the decoder it is EINVAL (was a traceback). The 4 coded frames keep their times 0, 15, 16, 17."""
    src = realmedia.require_media("sample_length.oggtheora")
    _, times = upscale_and_compare(src, tmp_path, upscaler)
    assert times == pytest.approx([0, 15 / 24, 16 / 24, 17 / 24], abs=0.0015)


def test_theora_picture_offset_is_cropped_not_rescaled(tmp_path: Path, upscaler: Upscaler,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A 300x200 Theora picture at an offset in its 304x208 frame: libavcodec's aligned crop left
    it 302 wide, which the reader took for a size change and rescaled to 300 (a warning)."""
    src = realmedia.require_cut("theora_offset_ogv")
    with caplog.at_level(logging.WARNING):
        dst, _ = upscale_and_compare(src, tmp_path, upscaler)
    assert "changes size" not in caplog.text
    size = ffprobe(dst, "-select_streams", "v:0", "-show_entries", "stream=width,height")["streams"][0]
    assert (size["width"], size["height"]) == (1200, 800)


def test_h264_in_avi_frames_are_not_one_frame_late(tmp_path: Path, upscaler: Upscaler) -> None:
    """AVI gives H.264 packets a dts only; PyAV's genpts set each packet's pts to the next one's dts,
    so every frame came one slot late (0.08, 0.12, ... for 0, 0.08, ...) against its audio."""
    src = realmedia.require_cut("h264_avi_aac")
    _, times = upscale_and_compare(src, tmp_path, upscaler)
    assert times == pytest.approx([0, 0.08], abs=0.0015)


def test_mpegts_audio_track_without_packets_is_left_out(tmp_path: Path, upscaler: Upscaler,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A cut TS whose table declares an MP3 track that has no packet (no sample rate): the
    muxer refused the header (a traceback). The video is upscaled, the empty track left out, said so."""
    src = realmedia.require_media("hachoir_sample.ts")
    with caplog.at_level(logging.WARNING):
        dst, _ = upscale_and_compare(src, tmp_path, upscaler)
    assert "audio stream #1" in caplog.text
    kinds = [s["codec_type"] for s in ffprobe(dst, "-show_entries", "stream=codec_type")["streams"]]
    assert kinds == ["video"]
    assert video_facts(dst)[2] == Fraction(64, 45)


def test_latin1_tags_are_one_error_line(tmp_path: Path) -> None:
    """RealMedia's copyright tag in Latin-1 made PyAV raise UnicodeDecodeError at open: a
    traceback. The file (Cook audio, no video) now gets the one line any video-less file gets."""
    src = realmedia.require_media("firstrun.rm")
    assert container_suffix(src, "libx264") == ".mkv"
    out = tmp_path / "firstrun_x4.mkv"
    proc = subprocess.run([sys.executable, "-m", "rtsr", "upscale", str(src), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"rtsr: error: {src} has no video stream"], proc.stderr
    assert list(tmp_path.iterdir()) == []


def upscale_picture(src: Path, out: Path) -> subprocess.CompletedProcess:
    """`rtsr upscale src -o out` with the shipped lite model, which must succeed."""
    proc = subprocess.run([sys.executable, "-m", "rtsr", "upscale", str(src), "-o", str(out), "--model",
                           "srgan-x4-lite"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A JPEG tagged orientation 6 shows turned 90 degrees clockwise; the output (no tag) must be
    the picture as shown, not as stored."""
    src = realmedia.require_media("hopper_orientation_6.jpg")
    out = tmp_path / "turned_x4.jpg"
    upscale_picture(src, out)
    stored = cv2.imdecode(np.fromfile(src, np.uint8), cv2.IMREAD_UNCHANGED).astype(np.float64)
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.shape == (512, 512, 3)
    small = cv2.resize(result, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float64)

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(10 * np.log10(255**2 / np.mean((a - b) ** 2)))

    assert psnr(small, np.rot90(stored, k=-1)) > 30
    assert psnr(small, stored) < 20


@pytest.mark.parametrize("suffix", [".png", ".webp"])
@pytest.mark.parametrize("orientation", range(2, 9))
def test_png_and_webp_exif_orientation_is_applied(tmp_path: Path, suffix: str, orientation: int) -> None:
    """PNG (eXIf) and WebP (EXIF chunk) carry orientation as JPEG does; Pillow writes the tag and
    is the referee (ImageOps.exif_transpose): the picture read is the one a viewer shows, its
    alpha turned with it."""
    Image = pytest.importorskip("PIL.Image")
    ImageOps = pytest.importorskip("PIL.ImageOps")
    from rtsr.images import read_image

    rng = np.random.default_rng(orientation)
    rgba = rng.integers(0, 256, (6, 10, 4), dtype=np.uint8)
    src = tmp_path / f"tagged{suffix}"
    picture = Image.fromarray(rgba, "RGBA")
    exif = picture.getexif()
    exif[0x0112] = orientation
    picture.save(src, exif=exif.tobytes(), **({"lossless": True} if suffix == ".webp" else {}))
    shown = np.asarray(ImageOps.exif_transpose(Image.open(src)))
    rgb, alpha = read_image(src)
    assert rgb.shape[:2] == shown.shape[:2] != rgba.shape[:2] or orientation < 5
    assert np.array_equal(rgb, shown[..., :3]) and np.array_equal(alpha, shown[..., 3])


# files new to the suite that came through the sweep whole, kept so (VP8 WebM with Vorbis; an
# ASF cut short whose third WMV1 track is the one coded, WMA first)
def test_vp8_webm_with_vorbis_keeps_every_frame(tmp_path: Path, upscaler: Upscaler) -> None:
    upscale_and_compare(realmedia.require_cut("vp8_webm_vorbis"), tmp_path, upscaler)


def test_asf_whose_third_video_track_is_coded_keeps_every_frame(tmp_path: Path, upscaler: Upscaler) -> None:
    src = realmedia.require_media("matrix_ping_pong.wmv")
    dst = tmp_path / default_video_output(src, 4, "libx264").name
    stats = upscale_video(src, dst, upscaler)
    t_in = realmedia.frame_times(src, "v:2")
    assert stats.frames == len(t_in) == 44
    assert realmedia.frame_times(dst) == pytest.approx(t_in, abs=0.0015)
    assert len(audio_packets(dst)) == len(audio_packets(src))


def test_animated_16bit_png_says_it_is_written_8bit(tmp_path: Path) -> None:
    """OpenCV's animation encoder writes 8 bits a channel: a 16-bit APNG came out 8-bit while
    the summary said "16-bit". Now it is converted as stills are, with the warning, and said so."""
    src = realmedia.require_media("apng_mode_16bit.png")
    out = tmp_path / "anim_x4.png"
    proc = upscale_picture(src, out)
    assert "written as 8-bit" in proc.stderr and "16-bit" not in proc.stdout, (proc.stdout, proc.stderr)
    ok, anim = cv2.imdecodeanimation(np.fromfile(out, np.uint8))
    assert ok and [f.shape for f in anim.frames] == [(256, 512, 4)] * 2 and list(anim.durations) == [100, 1000]


def test_sixteen_bit_tiff_is_a_picture_and_stays_sixteen_bit(tmp_path: Path) -> None:
    """A .tif photo was taken for a video: a one-frame H.264 .mkv, or with -o x.png "a .png file
    cannot hold libx264 video". It is a picture now, and a 16-bit one stays 16-bit."""
    src = realmedia.require_media("16bit.cropped.tif")
    out = tmp_path / "gray16_x4.tif"
    upscale_picture(src, out)
    gray = cv2.imdecode(np.fromfile(src, np.uint8), cv2.IMREAD_UNCHANGED).astype(np.float64)
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.dtype == np.uint16 and result.shape == (256, 256, 3)
    assert (result % 257 != 0).any()  # real 16-bit values, not 8-bit ones stretched
    small = cv2.resize(result, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float64)
    # the picture spans 0..694 of 65535, under 3 steps of 8 bits: the result stays within one step
    assert np.sqrt(np.mean((small - gray[..., None]) ** 2)) < 257
