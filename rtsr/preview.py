"""`rtsr preview`: a webcam, capture card, stream or file upscaled live in a window.

Latency first: a capture thread keeps only the newest frame, so a slow model drops frames
instead of queueing them and falling behind. The upscaling is the same `Upscaler` the video
pipeline uses, and `--record` writes through the pipeline's `VideoWriter`.
"""
from __future__ import annotations

import ctypes
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

from rtsr.errors import RtsrError
from rtsr.paths import atomic_output
from rtsr.upscaler import Upscaler
from rtsr.video.color import ColorSpec, rgb_to_yuv420
from rtsr.video.reader import VideoInfo
from rtsr.video.writer import EncodeOptions, FrameBatch, VideoWriter

log = logging.getLogger(__name__)
WINDOW = "rtsr preview"
MAX_WINDOW = (1600, 900)     # largest initial window; the window keeps the aspect when resized
SYSTEM_FONTS = Path("/usr/share/fonts/truetype")  # OpenCV's bundled Qt ships none and says so on every start
COMPARE_MODES = ("split", "side", "off")
RECORD_TIME_BASE = Fraction(1, 1000)  # recorded frames carry their capture time in ms


def parse_source(text: str) -> int | str:
    """'0' -> camera index 0; anything else is a device path, a file or a URL."""
    return int(text) if text.isdigit() else text


def open_capture(source: int | str, size: tuple[int, int] | None, fps: float | None) -> cv2.VideoCapture:
    """Open a capture, or raise one clear line: OpenCV itself only returns an unopened object."""
    if isinstance(source, int) and os.name == "posix" and not Path(f"/dev/video{source}").exists():
        raise RtsrError(f"no camera at index {source} (/dev/video{source} does not exist)")
    if isinstance(source, str) and "://" not in source and not Path(source).exists():
        raise RtsrError(f"source not found: {source}")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # its warnings are not for users
    try:
        cap = cv2.VideoCapture(source)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not cap.isOpened():
        raise RtsrError(f"cannot open video source {source!r}")
    if size:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
    if fps:
        cap.set(cv2.CAP_PROP_FPS, fps)
    return cap


def _x_connect_error(display: str, timeout: float) -> str | None:
    """Why an X client cannot connect to `display` (None: it can, or libxcb is not here to ask).
    libxcb is what OpenCV's Qt window connects with; asking it costs one round trip."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return None
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    xcb.xcb_connection_has_error.restype = ctypes.c_int
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    result: list[int] = []

    def connect() -> None:
        conn = xcb.xcb_connect(display.encode(), None)
        result.append(xcb.xcb_connection_has_error(conn))
        xcb.xcb_disconnect(conn)

    worker = threading.Thread(target=connect, name="rtsr-x-check", daemon=True)  # a remote host may not answer
    worker.start()
    worker.join(timeout)
    if not result:
        return f"no answer in {timeout:.0f} s"
    return {0: None, 5: "not a display name", 6: "no such screen"}.get(
        result[0], "no X server answers there, or it refused this client")


def _opencv_gui_is_qt() -> bool:
    return re.search(r"^\s*QT:\s*YES", cv2.getBuildInformation(), re.MULTILINE) is not None


def check_display(opts: PreviewOptions, timeout: float = 5.0) -> None:
    """One line now if a window cannot open: OpenCV's Qt build aborts the whole process (SIGABRT)
    when its X display is missing or dead, so the X server itself is asked, not just $DISPLAY
    (a DISPLAY left over from an ended ssh or tmux session names a server that is gone)."""
    if opts.headless or os.environ.get("QT_QPA_PLATFORM", "xcb").split(":")[0] not in ("", "xcb"):
        return  # no window, or a Qt platform the user chose (offscreen, wayland...)
    display = os.environ.get("DISPLAY")
    if not display:
        if os.environ.get("WAYLAND_DISPLAY") and not _opencv_gui_is_qt():
            return
        raise RtsrError("no X display (DISPLAY is unset); run with --headless to record or measure")
    reason = _x_connect_error(display, timeout)
    if reason:
        raise RtsrError(f"cannot open a window on X display {display} ({reason}); check DISPLAY, "
                        f"or run with --headless to record or measure")


class LatestFrame:
    """Capture thread that keeps only the newest frame (and counts the ones it replaced)."""

    def __init__(self, cap: cv2.VideoCapture, is_file: bool, file_fps: float | None) -> None:
        self.cap, self.is_file = cap, is_file
        # a file is read at its own rate, as a camera would deliver it
        self.interval = 1.0 / file_fps if is_file and file_fps else 0.0
        self._lock = threading.Condition()
        self._frame: tuple[np.ndarray, float, int] | None = None
        self.captured = self.dropped = 0
        self.ended = False
        self.failed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtsr-capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_time = time.perf_counter()
        while not self._stop.is_set():
            ok, bgr = self.cap.read()
            stamp = time.perf_counter()
            with self._lock:
                if not ok:
                    self.ended, self.failed = True, not self.is_file
                    self._lock.notify_all()
                    return
                if self._frame is not None:
                    self.dropped += 1
                self.captured += 1
                self._frame = (bgr, stamp, self.captured)
                self._lock.notify_all()
            if self.interval:
                next_time += self.interval
                time.sleep(max(0.0, next_time - time.perf_counter()))

    def take(self, timeout: float) -> tuple[np.ndarray, float, int] | None:
        """The newest frame not yet taken, waiting up to `timeout`; None at the end."""
        with self._lock:
            self._lock.wait_for(lambda: self._frame is not None or self.ended, timeout)
            frame, self._frame = self._frame, None
            return frame

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.cap.release()


@dataclass
class PreviewStats:
    shown: int = 0
    dropped: int = 0
    model_ms: list[float] = field(default_factory=list)
    glass_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        def stat(v: list[float]) -> str:
            return f"mean {np.mean(v):.1f} ms, p95 {np.percentile(v, 95):.1f} ms" if v else "n/a"

        fps = self.shown / self.seconds if self.seconds else 0.0
        return (f"{self.shown} frames shown ({fps:.1f} fps), {self.dropped} dropped; "
                f"model latency {stat(self.model_ms)}; glass-to-glass {stat(self.glass_ms)}")


def compose(lr_rgb: np.ndarray, sr_rgb: np.ndarray, mode: str, split: float) -> np.ndarray:
    """What the window shows: rtsr alone, or beside/against bicubic at the same size (RGB)."""
    if mode == "off":
        return sr_rgb
    h, w = sr_rgb.shape[:2]
    bicubic = cv2.resize(lr_rgb, (w, h), interpolation=cv2.INTER_CUBIC)
    if mode == "side":
        return np.hstack((bicubic, sr_rgb))
    x = int(np.clip(split, 0.0, 1.0) * w)
    shown = sr_rgb.copy()
    shown[:, :x] = bicubic[:, :x]
    shown[:, max(0, x - 1):x + 1] = (255, 255, 255)
    return shown


def draw_overlay(bgr: np.ndarray, lines: list[str]) -> None:
    scale = max(0.4, bgr.shape[0] / 900)
    for i, text in enumerate(lines):
        org = (8, int((i + 1) * 22 * scale) + 4)
        cv2.putText(bgr, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(bgr, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale, (255, 255, 255), 1, cv2.LINE_AA)


class Recorder:
    """Writes upscaled RGB frames through the video pipeline's writer, timed by capture time."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float) -> None:
        w, h = size
        self._spec = ColorSpec.from_tags(1, 1, 1, 1, h)  # BT.709 limited, tagged as such
        info = VideoInfo(width=w - w % 2, height=h - h % 2, time_base=RECORD_TIME_BASE,
                         average_rate=Fraction(fps).limit_denominator(1000), frames=None, color=self._spec,
                         copy_streams=())
        self._atomic = atomic_output(path)
        tmp = self._atomic.__enter__()
        try:
            self.writer = VideoWriter(tmp, info, None, 1, EncodeOptions(), queue_size=8)
        except BaseException as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self.size, self._t0, self._last = (info.width, info.height), None, -1

    def add(self, rgb: np.ndarray, stamp: float) -> None:
        self._t0 = stamp if self._t0 is None else self._t0
        pts = max(self._last + 1, round((stamp - self._t0) * 1000))
        self._last = pts
        w, h = self.size
        x = torch.from_numpy(np.ascontiguousarray(rgb[:h, :w])).permute(2, 0, 1)[None].float() / 255
        packed = torch.cat([p.flatten(1) for p in rgb_to_yuv420(x, self._spec)], 1)
        self.writer.put(FrameBatch(packed, [pts], RECORD_TIME_BASE, 0))

    def close(self, ok: bool) -> None:
        if ok:
            self.writer.finish()
            self._atomic.__exit__(None, None, None)
        else:
            self.writer.abort()
            err = RtsrError("recording stopped")
            self._atomic.__exit__(RtsrError, err, None)


@dataclass
class PreviewOptions:
    source: int | str
    capture_size: tuple[int, int] | None = None
    fps: float | None = None
    compare: str = "split"
    record: Path | None = None
    max_frames: int | None = None
    headless: bool = False


def run_preview(upscaler: Upscaler, opts: PreviewOptions, cap: cv2.VideoCapture | None = None) -> PreviewStats:
    """The live loop; returns what the summary line reports. `cap`: the source, already opened
    (by `open_capture`, after `check_display`), else opened here."""
    if cap is None:
        check_display(opts)
        cap = open_capture(opts.source, opts.capture_size, opts.fps)
    is_file = isinstance(opts.source, str) and "://" not in opts.source
    source_fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    grabber = LatestFrame(cap, is_file, source_fps)
    stats = PreviewStats()
    recorder: Recorder | None = None
    mode, split, paused = opts.compare, 0.5, False
    min_interval = 1.0 / opts.fps if opts.fps else 0.0
    if not opts.headless:
        if SYSTEM_FONTS.is_dir():
            os.environ.setdefault("QT_QPA_FONTDIR", str(SYSTEM_FONTS))
        # GUI_NORMAL: no toolbar, so the picture is shown 1:1 until the user resizes the window
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)

        def on_mouse(event: int, x: int, _y: int, flags: int, _param: object) -> None:
            nonlocal split
            if event == cv2.EVENT_LBUTTONDOWN or (event == cv2.EVENT_MOUSEMOVE and flags & cv2.EVENT_FLAG_LBUTTON):
                width = cv2.getWindowImageRect(WINDOW)[2] or 1
                split = x / width

        cv2.setMouseCallback(WINDOW, on_mouse)
    start = last_shown = time.perf_counter()
    ok = False
    try:
        while opts.max_frames is None or stats.shown < opts.max_frames:
            item = grabber.take(timeout=5.0)
            if item is None:
                if grabber.failed:
                    raise RtsrError(f"video source {opts.source!r} stopped delivering frames (disconnected?)")
                if grabber.ended:
                    break
                raise RtsrError(f"no frame from {opts.source!r} in 5 s")
            bgr, stamp, _ = item
            lr = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            t0 = time.perf_counter()
            sr = upscaler(lr)
            if upscaler.device.type == "cuda":
                torch.cuda.synchronize(upscaler.device)
            model_ms = 1000 * (time.perf_counter() - t0)
            if opts.record and recorder is None:
                recorder = Recorder(opts.record, (sr.shape[1], sr.shape[0]), opts.fps or source_fps)
            if recorder:
                recorder.add(sr, stamp)
            if not opts.headless:
                shown = cv2.cvtColor(compose(lr, sr, mode, split), cv2.COLOR_RGB2BGR)
                fps = stats.shown / max(time.perf_counter() - start, 1e-6)
                draw_overlay(shown, [f"{upscaler.card.name} via {upscaler.backend.name} on {upscaler.device}",
                                     f"{fps:.1f} fps  model {model_ms:.0f} ms  "
                                     f"glass-to-glass {1000 * (time.perf_counter() - stamp):.0f} ms",
                                     f"compare: {mode}" + ("  REC" if recorder else "")])
                if stats.shown == 0:
                    scale = min(1.0, MAX_WINDOW[0] / shown.shape[1], MAX_WINDOW[1] / shown.shape[0])
                    cv2.resizeWindow(WINDOW, int(shown.shape[1] * scale), int(shown.shape[0] * scale))
                cv2.imshow(WINDOW, shown)
            stats.glass_ms.append(1000 * (time.perf_counter() - stamp))
            stats.model_ms.append(model_ms)
            stats.shown += 1
            if min_interval:
                time.sleep(max(0.0, last_shown + min_interval - time.perf_counter()))
            last_shown = time.perf_counter()
            if opts.headless:
                continue
            key = cv2.waitKey(1) & 0xFF
            while paused and key not in (ord(" "), ord("q"), 27):
                key = cv2.waitKey(50) & 0xFF
            if key in (ord("q"), 27):
                break
            if key == ord(" "):
                paused = not paused
            elif key == ord("c"):
                mode = COMPARE_MODES[(COMPARE_MODES.index(mode) + 1) % len(COMPARE_MODES)]
            elif key in (ord("a"), ord("d")):
                split += -0.05 if key == ord("a") else 0.05
            elif key == ord("s"):
                snap = Path(f"rtsr_snapshot_{time.strftime('%Y%m%d_%H%M%S')}.png")
                cv2.imwrite(str(snap), shown)
                log.info("saved %s", snap)
            elif key == ord("r"):  # start a new recording, or stop the current one
                if recorder:
                    recorder.close(True)
                    recorder, opts.record = None, None
                else:
                    opts.record = Path(f"rtsr_record_{time.strftime('%Y%m%d_%H%M%S')}.mp4")
        ok = True
    finally:
        stats.seconds = time.perf_counter() - start
        stats.dropped = grabber.dropped
        grabber.stop()
        if recorder:
            recorder.close(ok)
        if not opts.headless:
            cv2.destroyAllWindows()
    return stats

