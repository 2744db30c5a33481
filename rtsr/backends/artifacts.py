"""What the ONNX-fed backends (OpenVINO, ncnn) build from, cached in the user cache folder.

The TorchScript ONNX export takes seconds (2 s for srgan-x4-lite on one core), longer than an
OpenVINO compile, so the exported file is kept, keyed by the model hash (rtsr.backends.tensorrt's:
architecture and every weight) and the opset, beside what each backend builds from it.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from rtsr.backends.onnx_export import OPSET, export_onnx
from rtsr.backends.tensorrt import model_hash
from rtsr.errors import RtsrError
from rtsr.locations import cache_dir, write_cache_file
from rtsr.models.srgan import Generator

log = logging.getLogger(__name__)


def backend_cache_dir(backend: str) -> Path:
    """The cache subfolder of one backend (e.g. ~/.cache/rtsr/openvino)."""
    return cache_dir() / backend


def key_part(text: str) -> str:
    """`text` made safe for a file name: runs of anything but letters, digits and dots -> '-'."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def cached_onnx(generator: Generator, digest: str | None = None, clamp: bool = True) -> Path:
    """The fp32 ONNX export of `generator` (dynamic batch, height, width), exported on first use;
    `clamp`: as export_onnx."""
    digest = digest or model_hash(generator)
    path = backend_cache_dir("onnx") / f"{digest}_opset{OPSET}_fp32{'' if clamp else '_raw'}.onnx"
    if not path.is_file():
        log.info("exporting %s to ONNX (once per model)", generator.config.name)
        write_cached(path, export_onnx(generator, fp16=False, clamp=clamp))
    return path


def write_cached(path: Path, data: bytes) -> Path:
    """write_cache_file, with an unwritable cache folder as one user-readable error."""
    try:
        return write_cache_file(path, data)
    except OSError as exc:
        raise RtsrError(f"cannot write {path.name} into the cache folder {path.parent} ({exc.strerror or exc}); "
                        "set RTSR_CACHE_DIR to a writable folder") from None
