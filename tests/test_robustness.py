"""Issue 13: signals, stale temporary files, full and read-only disks, bad encoder options, file
modes, concurrent runs, truncated inputs, a dead X display, huge and unusual pictures."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from rtsr.cli import main
from rtsr.errors import RtsrError
from rtsr.paths import atomic_output
from rtsr.video.synth import write_clip


def run_cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtsr", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("rtsr: error:") and fragment in lines[0], lines[0]
    return lines[0]


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def noise(h: int, w: int, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, (h, w, 3)).astype(dtype)


def clip(path: Path, frames: int = 48, audio: bool = True) -> Path:
    write_clip(path, [noise(24, 32, i) for i in range(frames)], audio=audio)
    return path


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at `where` (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir(exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


# -- item 2: SIGTERM, and temporary files of killed runs ------------------------------------------

def start_run(src: Path, weights: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    """A video run, returned once its hidden temporary output exists."""
    proc = subprocess.Popen([sys.executable, "-m", "rtsr", "upscale", str(src), "--model", str(weights),
                             "--device", "cpu", "--batch", "1", "-q", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        temps = [p for p in src.parent.iterdir() if p.name.endswith(".part.mp4")]
        if temps:
            return proc, temps[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("no temporary output appeared")


def test_sigterm_is_like_ctrl_c(tmp_path: Path, tiny_weights: Path) -> None:
    src = clip(tmp_path / "in.mp4", 400, audio=False)
    proc, _ = start_run(src, tiny_weights)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.strip().splitlines() == ["rtsr: terminated"], err
    assert hidden(tmp_path) == [] and not (tmp_path / "in_x4.mp4").exists()


def test_temp_of_a_killed_run_is_removed_by_the_next_not_a_live_ones(tmp_path: Path, tiny_weights: Path) -> None:
    src = clip(tmp_path / "in.mp4", 400, audio=False)
    proc, left = start_run(src, tiny_weights)
    proc.kill()  # SIGKILL: no cleanup can run
    proc.communicate(timeout=60)
    assert left.exists()
    live = tmp_path / ".in_x4.abcd1234.part.mp4"  # a run still writing holds its temp locked
    live.write_bytes(b"busy")
    with live.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = run_cli("upscale", str(src), "--model", str(tiny_weights), "--device", "cpu", "--max-frames", "2")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == f"rtsr: removed {left}, left by an interrupted run"
    assert hidden(tmp_path) == [live.name] and (tmp_path / "in_x4.mp4").is_file()


# -- item 4: modes --------------------------------------------------------------------------------

@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_output_mode_is_a_plain_writes(tmp_path: Path, tiny_weights: Path, umask: int, mode: int) -> None:
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), noise(8, 8))
    old = os.umask(umask)
    try:
        assert main(["upscale", str(src), "--model", str(tiny_weights), "--device", "cpu"]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "in_x4.png").stat().st_mode) == mode


def test_overwrite_keeps_the_targets_mode(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), noise(8, 8))
    out = tmp_path / "in_x4.png"
    out.write_bytes(b"old")
    out.chmod(0o640)
    assert main(["upscale", str(src), "--model", str(tiny_weights), "--device", "cpu", "--overwrite"]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o640 and cv2.imread(str(out)).shape == (32, 32, 3)


# -- item 5: two runs, one output -----------------------------------------------------------------

def test_output_that_appeared_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    with pytest.raises(RtsrError, match="appeared while this run was writing it"):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"mine")
            target.write_bytes(b"the other run's")  # another run finished first
    assert target.read_bytes() == b"the other run's" and hidden(tmp_path) == []
    with atomic_output(target) as tmp:  # there at the start: the user asked to overwrite it
        tmp.write_bytes(b"mine")
    assert target.read_bytes() == b"mine" and hidden(tmp_path) == []
