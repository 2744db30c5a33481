"""Still and animated pictures in and out (PNG, JPEG, WebP, BMP, TIFF) as RGB arrays.

8-bit pictures are uint8 arrays and 16-bit PNGs and TIFFs uint16, so a 16-bit picture keeps its depth
through the upscale. An animated WebP or PNG is read and written as a whole animation (frames,
their durations and the loop count), through OpenCV's animation codecs.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rtsr.errors import RtsrError
from rtsr.paths import atomic_output

log = logging.getLogger(__name__)
# a .tif photo was taken for a video (a one-frame H.264 .mkv, or "cannot hold libx264 video")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
ANIMATED_SUFFIXES = frozenset({".webp", ".png"})
SIXTEEN_BIT_SUFFIXES = frozenset({".png", ".tif", ".tiff"})
# largest side each format holds: libwebp 16383 (14 bits), libjpeg's JPEG_MAX_DIMENSION 65500
SIDE_LIMITS = {".webp": 16383, ".jpg": 65500, ".jpeg": 65500}
BMP_MAX_BYTES = 2**31 - 1  # OpenCV's BMP writer keeps sizes in 32-bit signed fields


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


@dataclass
class Animation:
    """Frames (RGB, with alpha or None) and how they play."""

    frames: list[tuple[np.ndarray, np.ndarray | None]]
    durations: list[int]  # milliseconds, one per frame
    loop_count: int = 0   # 0: forever


@contextlib.contextmanager
def _opencv_quiet() -> Iterator[None]:
    """OpenCV's own [ERROR]/[WARN] lines are not for users: rtsr says what went wrong itself."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _from_opencv(img: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """OpenCV's gray/BGR/BGRA (uint8 or uint16) -> (RGB, alpha or None) of the same dtype."""
    if img.dtype not in (np.uint8, np.uint16):
        raise RtsrError(f"{img.dtype} pictures are not supported (8 and 16 bits are)")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB), None
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB), img[:, :, 3].copy()
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), None


def _to_opencv(rgb: np.ndarray, alpha: np.ndarray | None, reuse: bool) -> np.ndarray:
    """(RGB, alpha) -> BGR/BGRA for OpenCV; `reuse` converts a 3-channel `rgb` in place."""
    if alpha is None:
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR, dst=rgb if reuse else None)
    bgra = np.empty((*rgb.shape[:2], 4), rgb.dtype)
    bgra[..., :3] = rgb[..., ::-1]
    bgra[..., 3] = alpha
    return bgra


def _read_bytes(path: Path) -> np.ndarray:
    if not path.is_file():
        raise RtsrError(f"input not found: {path}")
    return np.fromfile(path, dtype=np.uint8)


def read_image(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(RGB H x W x 3, alpha H x W or None), uint8 or (16-bit PNG, TIFF) uint16; one clear error for
    anything unreadable."""
    data = _read_bytes(path)
    # a JPEG is turned as its EXIF orientation says, as viewers show it (the output carries no such
    # tag): OpenCV does that only when asked for colour, which loses nothing on a JPEG (no alpha)
    jpeg = data[:3].tobytes() == b"\xff\xd8\xff"
    orientation = 1
    with _opencv_quiet():
        if not data.size:
            img = None
        elif jpeg:
            img = cv2.imdecode(data, cv2.IMREAD_COLOR)
        elif hasattr(cv2, "imdecodeWithMetadata"):
            # PNG and WebP carry EXIF too (eXIf / EXIF chunks), which OpenCV applies only to a
            # colour read: read unchanged (alpha, 16 bits) with the metadata and turn it here
            img, kinds, blobs = cv2.imdecodeWithMetadata(data, flags=cv2.IMREAD_UNCHANGED)
            exif = [np.asarray(b).tobytes() for k, b in zip(np.asarray(kinds).ravel(), blobs)
                    if k == cv2.IMAGE_METADATA_EXIF]
            orientation = _exif_orientation(exif[0]) if exif else 1
        else:
            img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise RtsrError(f"cannot read {path} as an image (corrupt or not an image)")
    rgb, alpha = _from_opencv(img)
    if orientation != 1:
        rgb = _oriented(rgb, orientation)
        alpha = None if alpha is None else _oriented(alpha, orientation)
    return rgb, alpha


def _exif_orientation(exif: bytes) -> int:
    """The Orientation tag (0x0112, 1-8) of an EXIF block (a TIFF header and IFD0), 1 where absent
    or unreadable."""
    if exif[:6] == b"Exif\0\0":
        exif = exif[6:]
    order = {b"II": "little", b"MM": "big"}.get(exif[:2])
    if order is None or len(exif) < 8:
        return 1
    ifd = int.from_bytes(exif[4:8], order)
    if ifd + 2 > len(exif):
        return 1
    for i in range(int.from_bytes(exif[ifd:ifd + 2], order)):
        entry = exif[ifd + 2 + 12 * i:ifd + 14 + 12 * i]
        if len(entry) == 12 and int.from_bytes(entry[:2], order) == 0x0112:
            value = int.from_bytes(entry[8:10], order)
            return value if 1 <= value <= 8 else 1
    return 1


def _oriented(a: np.ndarray, orientation: int) -> np.ndarray:
    """`a` (H x W or H x W x C) turned as EXIF orientation 2-8 says a viewer shows it."""
    turn = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
            5: lambda x: x.swapaxes(0, 1), 6: lambda x: np.rot90(x, -1),
            7: lambda x: x.swapaxes(0, 1)[::-1, ::-1], 8: lambda x: np.rot90(x, 1)}[orientation]
    return np.ascontiguousarray(turn(a))


def _is_animated(data: np.ndarray) -> bool:
    """An animated WebP (VP8X with the animation flag) or PNG (acTL chunk before the pixels)."""
    head = data[:64].tobytes()
    if head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X":
        return bool(head[20] & 0x02)
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        blob = data.tobytes()
        pos = 8
        while pos + 8 <= len(blob):
            size, kind = int.from_bytes(blob[pos:pos + 4], "big"), blob[pos + 4:pos + 8]
            if kind == b"acTL":
                return True
            if kind in (b"IDAT", b"IEND"):
                return False
            pos += 12 + size
    return False


def read_animation(path: Path) -> Animation | None:
    """The frames of an animated WebP/PNG, or None for a still picture."""
    data = _read_bytes(path)
    if not _is_animated(data):
        return None
    if not hasattr(cv2, "imdecodeanimation"):
        raise RtsrError(f"{path} is animated; reading animations needs opencv-python 4.11 or newer "
                        f"(installed: {cv2.__version__})")
    with _opencv_quiet():
        ok, anim = cv2.imdecodeanimation(data)
    if not ok or not anim.frames:
        raise RtsrError(f"cannot read {path} as an animation (corrupt?)")
    return Animation([_from_opencv(f) for f in anim.frames], [int(d) for d in anim.durations], int(anim.loop_count))


def check_image_output(path: Path, width: int, height: int, animated: bool = False) -> None:
    """Refuse, before any compute, an output the format cannot hold."""
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise RtsrError(f"cannot write a picture as {path.suffix or 'a file without a suffix'} "
                        f"({path}); use .png, .jpg, .webp, .bmp or .tif")
    if animated and suffix not in ANIMATED_SUFFIXES:
        raise RtsrError(f"an animation cannot be written as {suffix} ({path}); use .webp or .png")
    limit = SIDE_LIMITS.get(suffix)
    if limit is not None and max(width, height) > limit:
        raise RtsrError(f"the result, {width}x{height}, is larger than {suffix} allows ({limit} pixels a side); "
                        f"write .png with -o, or upscale a smaller picture")
    if suffix == ".bmp" and (width * 4 + 3) // 4 * 4 * 3 * height + 54 > BMP_MAX_BYTES:
        raise RtsrError(f"the result, {width}x{height}, is larger than a .bmp file holds (2 GiB); write .png with -o")


def _depth_for(path: Path, frames: list[tuple[np.ndarray, np.ndarray | None]], animated: bool = False
               ) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """16-bit pictures stay 16-bit where the format holds it; elsewhere 8-bit, and said so.
    OpenCV's animation encoder writes 8 bits a channel (16-bit APNG frames came out 8-bit)."""
    if frames[0][0].dtype == np.uint8 or (path.suffix.lower() in SIXTEEN_BIT_SUFFIXES and not animated):
        return frames
    if animated:
        log.warning("%s: animations are written 8 bits a channel: the 16-bit animation is written as 8-bit",
                    path.name)
    else:
        log.warning("%s holds 8 bits a channel: the 16-bit picture is written as 8-bit (.png keeps 16)", path.name)

    def to8(a: np.ndarray) -> np.ndarray:
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)

    return [(to8(rgb), None if alpha is None else to8(alpha)) for rgb, alpha in frames]


def _write_encoded(path: Path, encode) -> None:
    """Run `encode()` (OpenCV's (ok, buffer)) quietly and write the buffer atomically."""
    with _opencv_quiet():
        try:
            ok, encoded = encode()
        except cv2.error:
            ok, encoded = False, None
    if not ok:
        raise RtsrError(f"cannot encode {path.suffix} pictures of this size or kind ({path})")
    with atomic_output(path) as tmp:
        with tmp.open("wb") as fh:
            fh.write(memoryview(encoded))


def write_image(path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None, reuse: bool = False) -> None:
    """Encode by the path's suffix and write atomically. `reuse`: `rgb` may be overwritten (saves
    a copy of a large result)."""
    [(rgb, alpha)] = _depth_for(path, [(rgb, alpha)])
    check_image_output(path, rgb.shape[1], rgb.shape[0])
    img = _to_opencv(rgb, alpha, reuse)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
    _write_encoded(path, lambda: cv2.imencode(path.suffix.lower(), img, params))


def write_animation(path: Path, animation: Animation) -> None:
    """An animated WebP/PNG with the frames' durations and loop count, written atomically."""
    frames = _depth_for(path, animation.frames, animated=True)
    check_image_output(path, frames[0][0].shape[1], frames[0][0].shape[0], animated=True)
    anim = cv2.Animation()
    anim.frames = [_to_opencv(rgb, alpha, reuse=False) for rgb, alpha in frames]
    anim.durations = animation.durations
    anim.loop_count = animation.loop_count
    _write_encoded(path, lambda: cv2.imencodeanimation(path.suffix.lower(), anim))
