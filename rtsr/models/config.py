"""Typed model configuration, loaded from YAML, so architecture numbers live in one place."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from rtsr.errors import RtsrError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "models"


@dataclass(frozen=True)
class GeneratorConfig:
    """SRResNet/SRGAN generator shape (Ledig et al. 2017, fig. 4)."""

    name: str
    scale: int = 4
    num_blocks: int = 16
    channels: int = 64
    head_kernel: int = 9
    in_channels: int = 3
    skip: str = "none"  # "bicubic": the network adds to the bicubic upscale of its input (flat areas start there)

    def __post_init__(self) -> None:
        if self.skip not in ("none", "bicubic"):
            raise RtsrError(f"model '{self.name}': skip must be none or bicubic, got {self.skip!r}")
        if self.scale not in (2, 4):
            raise RtsrError(f"model '{self.name}': scale must be 2 or 4, got {self.scale}")
        if self.num_blocks < 1 or self.channels < 1:
            raise RtsrError(f"model '{self.name}': num_blocks and channels must be positive")

    @property
    def upsample_stages(self) -> int:
        """One PixelShuffle(2) stage per factor 2."""
        return {2: 1, 4: 2}[self.scale]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GeneratorConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise RtsrError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """The paper's discriminator: 8 conv blocks 64->512, dense 1024, dense 1."""

    base_channels: int = 64
    num_blocks: int = 8
    dense: int = 1024
    negative_slope: float = 0.2
    in_channels: int = 3


def load_generator_config(name_or_path: str | Path) -> GeneratorConfig:
    """Load a generator config from a YAML path or a bundled config name like 'srgan-x4'."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise RtsrError(f"no model config '{name_or_path}' (bundled: {names})")
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
    return GeneratorConfig.from_dict(data)
