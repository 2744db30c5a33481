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


# -- item 3: one line, exit 2 ---------------------------------------------------------------------

def test_read_only_folder_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), noise(8, 8))
    with tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        # a model that cannot load would be the error if the folder were checked after it
        one_line_error(run_cli("upscale", str(src), "-o", str(ro / "out.png"), "--model", "no-such-model"),
                       f"cannot write in {ro}: Read-only file system")
        video = clip(tmp_path / "in.mp4", 2, audio=False)
        one_line_error(run_cli("upscale", str(video), "-o", str(ro), "--model", "no-such-model"),
                       "Read-only file system")


@pytest.mark.parametrize("kind", ["image", "video"])
def test_disk_full_is_one_line_and_leaves_nothing(tmp_path: Path, tiny_weights: Path, kind: str) -> None:
    if kind == "image":
        src = tmp_path / "in.png"
        cv2.imwrite(str(src), noise(96, 96))  # ~110 KB of PNG noise once upscaled
    else:
        src = clip(tmp_path / "in.mp4", 12, audio=False)
    with tmpfs(tmp_path / "small", "size=32k") as small:
        proc = run_cli("upscale", str(src), "-o", str(small), "--model", str(tiny_weights), "--device", "cpu",
                       *(["--crf", "0"] if kind == "video" else []))
        one_line_error(proc, "disk full")
        assert list(small.iterdir()) == []


@pytest.mark.parametrize("args,fragment", [
    (["--preset", "nonsense"], "--preset 'nonsense' is not a libx264 preset"),
    (["--pix-fmt", "nonsense"], "unknown pixel format 'nonsense'"),
    (["--pix-fmt", "gray16le"], "libx264 cannot encode gray16le"),
    (["--crf", "-50"], "--crf -50 is out of range for libx264: 0 to 51"),
    (["--crf", "99"], "--crf 99 is out of range for libx264: 0 to 51"),
    (["--codec", "libsvtav1", "--crf", "0"], "out of range for libsvtav1: 1 to 63"),
    (["--codec", "libsvtav1", "--preset", "veryfast"], "is not a libsvtav1 preset"),
    (["--codec", "mpeg4", "--crf", "20"], "--crf cannot be passed to mpeg4"),
])
def test_bad_encoder_options_before_anything(tmp_path: Path, args: list[str], fragment: str) -> None:
    src = tmp_path / "in.mp4"
    src.write_bytes(b"")  # never read: the options are checked first
    one_line_error(run_cli("upscale", str(src), "--model", "no-such-model", *args), fragment)


def test_output_without_suffix(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), noise(8, 8))
    one_line_error(run_cli("upscale", str(src), "-o", str(tmp_path / "out"), "--model", str(tiny_weights)),
                   "has no suffix")
    one_line_error(run_cli("upscale", str(src), "-o", str(tmp_path / "out.mp4"), "--model", str(tiny_weights)),
                   "cannot write a picture as .mp4")


@pytest.mark.parametrize("suffix,width,limit", [(".webp", 4096, 16383), (".jpg", 16376, 65500)])
def test_picture_too_large_for_its_format_is_refused_before_compute(
        tmp_path: Path, tiny_weights: Path, capfd, monkeypatch, suffix: str, width: int, limit: int) -> None:
    src = tmp_path / "wide.png"
    cv2.imwrite(str(src), np.zeros((4, width, 3), np.uint8))

    def no_compute(*_a, **_k):
        raise AssertionError("the model ran")

    monkeypatch.setattr("rtsr.upscaler.Upscaler.__call__", no_compute)
    assert main(["upscale", str(src), "-o", str(tmp_path / f"out{suffix}"), "--model", str(tiny_weights),
                 "--device", "cpu"]) == 2
    err = capfd.readouterr().err
    assert err.strip().splitlines() == [f"rtsr: error: the result, {width * 4}x16, is larger than {suffix} allows "
                                        f"({limit} pixels a side); write .png with -o, or upscale a smaller picture"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".", "out"))]


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


# -- item 6: truncated inputs ---------------------------------------------------------------------

def faststart(src: Path, dst: Path) -> Path:
    """`src` remuxed with its index (moov) first, as web downloads usually are."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "+faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    return dst


def cut(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[:int(len(data) * fraction)])
    return dst


def test_truncated_download_is_warned(tmp_path: Path, tiny_weights: Path) -> None:
    whole = faststart(clip(tmp_path / "made.mp4"), tmp_path / "whole.mp4")
    src = cut(whole, tmp_path / "part.mp4", 0.3)
    proc = run_cli("upscale", str(src), "--model", str(tiny_weights), "--device", "cpu", "-q")
    assert proc.returncode == 0, proc.stderr
    frames = int(proc.stdout.split(": ")[1].split()[0])
    assert 0 < frames < 48
    assert f"input ends early: {frames} of 48 frames" in proc.stdout
    assert "the input file is cut short (its mdat box ends" in proc.stdout
    whole_run = run_cli("upscale", str(whole), "--model", str(tiny_weights), "--device", "cpu", "-q")
    assert whole_run.returncode == 0 and "early" not in whole_run.stdout and "cut short" not in whole_run.stdout


def test_truncated_matroska_and_a_cut_index(tmp_path: Path, tiny_weights: Path) -> None:
    src = cut(clip(tmp_path / "made.mkv"), tmp_path / "part.mkv", 0.3)
    proc = run_cli("upscale", str(src), "--model", str(tiny_weights), "--device", "cpu", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "input ends early" in proc.stdout and "of about" in proc.stdout and "Segment ends" in proc.stdout
    # an index (moov) cut near its start: the file cannot be read, and the error says why
    made = clip(tmp_path / "made.mp4", 4, audio=False)
    data = made.read_bytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(data[:data.index(b"moov") + 20])
    one_line_error(run_cli("upscale", str(broken), "--model", str(tiny_weights)),
                   "(the file is cut short: its moov box ends")


# -- item 7: preview with a dead display ----------------------------------------------------------

def test_preview_with_a_dead_x_display(tmp_path: Path, tiny_weights: Path) -> None:
    src = clip(tmp_path / "in.mp4", 2, audio=False)
    env = {**os.environ, "DISPLAY": ":59"}  # a DISPLAY left over from an ended ssh session
    env.pop("QT_QPA_PLATFORM", None)
    proc = run_cli("preview", "--source", str(src), "--model", str(tiny_weights), env=env)
    one_line_error(proc, "cannot open a window on X display :59")
    # the display and the source are checked before the model: each error names its own cause
    one_line_error(run_cli("preview", "--source", str(src), "--model", "no-such-model", env=env), "display :59")
    one_line_error(run_cli("preview", "--source", str(tmp_path / "gone.mp4"), "--headless", "--model",
                           "no-such-model"), "source not found")


# -- item 8: a huge picture in tiles --------------------------------------------------------------

MEASURE = """
import json, resource, sys
import numpy as np
from rtsr import Upscaler
# torch: what is measured is the Upscaler's streaming; OpenVINO (auto's pick on some CPUs) adds a
# compiled model per new tile shape (up to 8 kept), about 30 MB each here at the edge tiles
up = Upscaler(sys.argv[1], backend="torch", device="cpu", tile=128)
img = np.random.default_rng(0).integers(0, 256, (600, 900, 3), dtype=np.uint8)
up(img[:300, :300])  # warm up the allocator on whole tiles
rss = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
calls = []
out = up(img, progress=lambda done, total: calls.append((done, total)))
# VmHWM, the peak of this process's own memory: ru_maxrss would carry over pytest's peak (Linux
# keeps it across fork and exec), which made this test fail after a long suite
peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"growth": peak - rss, "result": out.nbytes, "calls": calls[-1], "n": len(calls)}))
"""


def test_huge_picture_is_streamed_tile_by_tile(tmp_path: Path, tiny_weights: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(tiny_weights)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["result"] == 2400 * 3600 * 3
    assert got["calls"] == [40, 40] and got["n"] == 40  # 5 x 8 tiles, one callback each
    # the result plus a few tiles' work (~30 MB here); the float path grew by 370 MB (14x the result)
    assert got["growth"] < got["result"] + 64 * 2**20, got


def test_progress_bar_over_tiles_on_a_terminal(tmp_path: Path, tiny_weights: Path) -> None:
    import pty
    import struct
    import termios

    src = tmp_path / "big.png"
    cv2.imwrite(str(src), noise(100, 100))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a width
    proc = subprocess.Popen([sys.executable, "-m", "rtsr", "upscale", str(src), "--model", str(tiny_weights),
                             "--device", "cpu", "--tile", "32"], stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    out, _ = proc.communicate(timeout=180)
    seen = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(master, 65536):
            seen += chunk
    os.close(master)
    assert proc.returncode == 0 and "big_x4.png" in out
    # 4 x 4 tiles; tqdm redraws at most every 0.1 s and clears the bar at the end (leave=False),
    # so which counts show depends on the machine's speed
    assert b"/16 [" in seen and b"tile/s" in seen, seen


def test_numpy_tiles_match_untiled_at_8_and_16_bits(tiny_weights: Path) -> None:
    from rtsr import Upscaler

    # torch fp32: the joins are exact by construction there; auto may measure OpenVINO bf16 fastest, whose
    # convolutions round differently at another input size (32 of 65535 apart), which says nothing of tiling
    whole, tiled = (Upscaler(tiny_weights, backend="torch", device="cpu", tile=t, precision="fp32") for t in (4096, 24))
    for dtype in (np.uint8, np.uint16):
        frame = noise(70, 90, 3, dtype)
        a, b = whole(frame), tiled(frame)
        assert a.dtype == b.dtype == dtype and a.shape == (280, 360, 3)
        assert np.abs(a.astype(np.int64) - b).max() <= 1  # float rounding at .5 only


# -- item 9: animations, 16 bits, -o FOLDER -------------------------------------------------------

@pytest.mark.parametrize("suffix", [".webp", ".png"])
def test_animation_stays_animated(tmp_path: Path, tiny_weights: Path, suffix: str) -> None:
    if not hasattr(cv2, "imencodeanimation"):
        pytest.skip("this OpenCV has no animation codecs (4.11+)")
    anim = cv2.Animation()
    anim.frames = [noise(12, 16, i) for i in range(3)]
    anim.durations, anim.loop_count = [100, 200, 300], 2
    src = tmp_path / f"anim{suffix}"
    ok, data = cv2.imencodeanimation(suffix, anim, [cv2.IMWRITE_WEBP_QUALITY, 101] if suffix == ".webp" else [])
    assert ok
    src.write_bytes(data.tobytes())
    assert main(["upscale", str(src), "--model", str(tiny_weights), "--device", "cpu"]) == 0
    ok, out = cv2.imreadanimation(str(tmp_path / f"anim_x4{suffix}"))
    assert ok and len(out.frames) == 3 and out.frames[0].shape == (48, 64, 3)
    assert list(out.durations) == [100, 200, 300] and out.loop_count == 2


def test_sixteen_bit_png_keeps_sixteen_bits(tmp_path: Path, tiny_weights: Path, capfd) -> None:
    src = tmp_path / "deep.png"
    cv2.imwrite(str(src), noise(10, 12, 1, np.uint16))
    assert main(["upscale", str(src), "--model", str(tiny_weights), "--device", "cpu"]) == 0
    out = cv2.imread(str(tmp_path / "deep_x4.png"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == (40, 48, 3)
    assert (out % 257 != 0).any()  # real 16-bit values, not 8-bit ones stretched
    assert "16-bit" in capfd.readouterr().out
    proc = run_cli("upscale", str(src), "-o", str(tmp_path / "flat.jpg"), "--model", str(tiny_weights), "--device", "cpu")
    assert proc.returncode == 0 and proc.stderr.strip() == (
        "rtsr: flat.jpg holds 8 bits a channel: the 16-bit picture is written as 8-bit (.png keeps 16)")
    assert cv2.imread(str(tmp_path / "flat.jpg"), cv2.IMREAD_UNCHANGED).dtype == np.uint8


def test_output_folder_with_one_input(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), noise(8, 8))
    (tmp_path / "out").mkdir()
    assert main(["upscale", str(src), "-o", str(tmp_path / "out"), "--model", str(tiny_weights), "--device", "cpu"]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["in_x4.png"]


def test_a_media_error_no_check_foresaw_is_one_line(tmp_path: Path, tiny_weights: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """An FFmpeg error raised mid-run (a damaged packet past every up-front check) ends in one
    `rtsr: error:` line and exit 2, no traceback and no output left behind."""
    import av

    import rtsr.video.pipeline
    from rtsr import cli

    def damaged(*_a, **_k):
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(rtsr.video.pipeline.DeviceStage, "submit", damaged)  # mid-run: the output is open
    src = Path(__file__).resolve().parents[1] / "samples" / "sample.mp4"
    out = tmp_path / "out.mp4"
    assert cli.main(["upscale", str(src), "-o", str(out), "--model", str(tiny_weights), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rtsr: error: [Errno 1094995529] Invalid data found when processing input"]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["tiny-x4.pt", "tiny-x4.yaml"]
