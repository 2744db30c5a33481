"""Weights files: the generator's weights together with its config and model card.

A file is a plain dict of tensors and builtins, read with `torch.load(weights_only=True)` so
that loading a model never executes code from the file.
"""
from __future__ import annotations

import logging
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from rtsr.errors import RtsrError
from rtsr.locations import weights_dir
from rtsr.models.config import GeneratorConfig
from rtsr.models.srgan import Generator

log = logging.getLogger(__name__)

FORMAT = "rtsr-weights"
FORMAT_VERSION = 1


@dataclass
class ModelCard:
    """What a shipped model is, how it was trained and how well it measured."""

    name: str
    config: dict[str, Any]
    kind: str = "psnr"  # "psnr" (MSE-trained, stable in video) or "gan" (textures, may flicker)
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelCard":
        return cls(**{k: data[k] for k in ("name", "config", "kind", "description", "training", "metrics") if k in data})


def save_weights(path: Path, generator: Generator, card: ModelCard) -> None:
    """Write weights + card (and the card as readable YAML beside it)."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "card": asdict(card), "state_dict": state}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    with path.with_suffix(".yaml").open("w") as fh:
        yaml.safe_dump(asdict(card), fh, sort_keys=False)


def load_weights(path: Path) -> tuple[Generator, ModelCard]:
    """Build the generator a weights file describes, in eval mode on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise RtsrError(f"weights file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise RtsrError(f"{path} is not a readable rtsr weights file ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise RtsrError(f"{path} is not an rtsr weights file")
    if payload.get("version") != FORMAT_VERSION:
        raise RtsrError(f"{path} has weights format {payload.get('version')}, this rtsr reads {FORMAT_VERSION}")
    try:
        card = ModelCard.from_dict(payload["card"])
        generator = Generator(GeneratorConfig.from_dict(card.config))
        generator.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise RtsrError(f"{path} does not match its model config: {str(exc).splitlines()[0]}") from None
    return generator.eval(), card


def shipped_models() -> dict[str, Path]:
    """Shipped weights (the package data of rtsr.weights), by model name."""
    return {p.stem: p for p in sorted(weights_dir().glob("*.pt"))}


def resolve_model(name_or_path: str | Path) -> Path:
    """A shipped model name or a path to a weights file -> the file's path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".pt" or candidate.is_file():
        if not candidate.is_file():
            raise RtsrError(f"weights file not found: {candidate}")
        return candidate
    models = shipped_models()
    if str(name_or_path) not in models:
        known = ", ".join(models) or "none shipped"
        raise RtsrError(f"unknown model '{name_or_path}' (shipped: {known}; or give a .pt path)")
    return models[str(name_or_path)]


def read_card(path: Path) -> ModelCard:
    """The card beside a shipped weights file, without loading the weights."""
    with Path(path).with_suffix(".yaml").open() as fh:
        return ModelCard.from_dict(yaml.safe_load(fh))
