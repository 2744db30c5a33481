"""Still images in and out (PNG, JPEG, WebP, BMP) as RGB uint8 arrays."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from rtsr.errors import RtsrError
from rtsr.paths import atomic_output

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(RGB uint8 H x W x 3, alpha H x W or None); a clear error for anything unreadable."""
    if not path.is_file():
        raise RtsrError(f"input not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise RtsrError(f"cannot read {path} as an image (corrupt or not an image)")
    if img.dtype != np.uint8:  # 16-bit PNG: model works on 8 bits
        img = (img.astype(np.float32) * (255.0 / np.iinfo(img.dtype).max)).round().astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB), None
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB), img[:, :, 3]
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), None


def write_image(path: Path, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
    """Encode by the path's suffix and write atomically."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if alpha is not None:
        bgr = np.dstack([bgr, alpha])
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(path.suffix.lower(), bgr, params)
    if not ok:
        raise RtsrError(f"cannot encode {path.suffix} images")
    with atomic_output(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
