"""Runtime settings (configs/runtime.yaml) as a typed dataclass."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from rtsr.errors import RtsrError

RUNTIME_YAML = Path(__file__).resolve().parent / "configs" / "runtime.yaml"


@dataclass(frozen=True)
class RuntimeSettings:
    model: str = "srgan-x4-steady"       # videos, preview, the per-frame API: flickers less than bicubic
    picture_model: str = "srgan-x4-clean"  # pictures (`rtsr upscale photo.png`): the sharpest, no frames to flicker
    tile: dict[str, int] = field(default_factory=lambda: {"cpu": 384, "cuda": 960})
    tile_overlap: int | None = None
    batch: dict[str, int] = field(default_factory=lambda: {"cpu": 1, "cuda": 8})
    queue_frames: int = 16
    cache_mib: int = 2048                # openvino/ and tensorrt/ of the cache folder are each kept under this

    def __post_init__(self) -> None:
        if isinstance(self.cache_mib, bool) or not isinstance(self.cache_mib, int) or self.cache_mib < 0:
            raise RtsrError(f"cache_mib must be a whole number of MiB, 0 or more (0 keeps only what was just "
                            f"built or used), not {self.cache_mib!r}")

    def batch_for(self, device_type: str) -> int:
        return int(self.batch.get(device_type, 1))

    def tile_for(self, device_type: str) -> int:
        return int(self.tile.get(device_type, min(self.tile.values())))


def load_settings(path: Path = RUNTIME_YAML) -> RuntimeSettings:
    with Path(path).open() as fh:
        data = yaml.safe_load(fh) or {}
    unknown = set(data) - {f.name for f in fields(RuntimeSettings)}
    if unknown:
        raise RtsrError(f"{path}: unknown settings {sorted(unknown)}")
    return RuntimeSettings(**data)


def cache_bound_bytes(cache_mib: int | None) -> int:
    """The compiled-model cache bound in bytes: `cache_mib` as a caller (an Upscaler's settings)
    gave it, or runtime.yaml's where it gave None."""
    return (load_settings().cache_mib if cache_mib is None else cache_mib) << 20


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' -> (640, 360)."""
    match = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not match:
        raise RtsrError(f"size '{text}' is not WIDTHxHEIGHT (e.g. 640x360)")
    return int(match[1]), int(match[2])
