"""`rtsr preview`: a real window under Xvfb, headless recording, and its one-line errors."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from rtsr import Upscaler
from rtsr.video.synth import write_clip


@pytest.fixture()
def still_clip(tmp_path: Path, photo: np.ndarray) -> tuple[Path, np.ndarray]:
    """A clip of one still frame repeated, so whatever frame is on screen is known."""
    lr = cv2.resize(photo[60:252, 100:356], (64, 48), interpolation=cv2.INTER_AREA)
    path = tmp_path / "still.mp4"
    write_clip(path, [lr] * 300, fps=30, audio=False, crf=0)  # 10 s: long enough to be seen
    with av.open(str(path)) as c:
        decoded = next(c.decode(video=0)).to_ndarray(format="rgb24")
    return path, decoded


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtsr", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_missing_camera_fails_fast_with_one_line(tiny_weights: Path) -> None:
    t0 = time.perf_counter()
    proc = run_cli("preview", "--source", "7", "--headless", "--model", str(tiny_weights))
    assert time.perf_counter() - t0 < 15  # interpreter + torch import; the check itself is immediate
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "no camera at index 7" in lines[0], proc.stderr


def test_no_display_without_headless(tiny_weights: Path, still_clip) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = run_cli("preview", "--source", str(still_clip[0]), "--model", str(tiny_weights), env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "--headless" in lines[0], proc.stderr


def test_headless_record_writes_playable_upscaled_file(tmp_path: Path, tiny_weights: Path, still_clip) -> None:
    out = tmp_path / "rec.mp4"
    proc = run_cli("preview", "--source", str(still_clip[0]), "--model", str(tiny_weights), "--headless",
                   "--record", str(out), "--max-frames", "6", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "frames shown" in proc.stdout
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert 1 <= len(frames) <= 6 and frames[0].shape == (192, 256, 3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


GRAB = """
import sys, av, numpy as np
with av.open(sys.argv[1], format="x11grab", options={"video_size": "800x600"}) as grab:
    np.save(sys.argv[2], next(grab.decode(video=0)).to_ndarray(format="bgr24"))
"""


def test_window_shows_the_upscaled_frame(tmp_path: Path, still_clip) -> None:
    """The shipped lite model (a real picture, unlike the tiny test model) in a window on Xvfb;
    a screenshot must contain the frame the API computes for the same input."""
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    display = ":97"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    preview = None
    try:
        time.sleep(1.0)
        env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
        preview = subprocess.Popen([sys.executable, "-m", "rtsr", "preview", "--source", str(still_clip[0]),
                                    "--model", "srgan-x4-lite", "--device", "cpu", "--compare", "off",
                                    "--max-frames", "80", "--fps", "10"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        expected = Upscaler("srgan-x4-lite", device="cpu")(still_clip[1])
        template = cv2.cvtColor(expected[expected.shape[0] // 2:], cv2.COLOR_RGB2BGR)  # below the overlay text
        best = -1.0
        deadline = time.time() + 60
        while time.time() < deadline and preview.poll() is None and best < 0.95:
            time.sleep(0.5)
            # grabbed in a child process: PyAV's and OpenCV's bundled libraries do not share one well
            subprocess.run([sys.executable, "-c", GRAB, display, str(tmp_path / "screen.npy")], check=True, timeout=30)
            screen = np.load(tmp_path / "screen.npy")
            best = float(cv2.matchTemplate(screen, template, cv2.TM_CCOEFF_NORMED).max())
        out, err = preview.communicate(timeout=60)
        assert preview.returncode == 0, err
        assert best > 0.95, f"upscaled frame not found on screen (best match {best:.3f})"
        assert "frames shown" in out
    finally:
        if preview is not None and preview.poll() is None:  # a hung preview must not outlive the test
            preview.kill()
            preview.wait(5)
        xvfb.terminate()
        xvfb.wait(5)
