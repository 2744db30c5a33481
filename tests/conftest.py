"""Shared fixtures: tiny models so the suite runs in seconds on two CPU cores."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rtsr.models import Generator, GeneratorConfig
from rtsr.models.weights import ModelCard, save_weights


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics (and every PReLU its own slopes) so folding
    and export are really exercised."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.PReLU):
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5)
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def make_generator(scale: int = 4, blocks: int = 2, channels: int = 8, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    g = Generator(GeneratorConfig(name=f"tiny-x{scale}", scale=scale, num_blocks=blocks, channels=channels))
    randomize_batchnorm(g, seed)
    return g.eval()


@pytest.fixture()
def tiny_weights(tmp_path: Path) -> Path:
    g = make_generator()
    path = tmp_path / "tiny-x4.pt"
    save_weights(path, g, ModelCard(name="tiny-x4", config=g.config.to_dict(), description="test model"))
    return path


@pytest.fixture()
def photo() -> np.ndarray:
    """A real photo (held out from training) as RGB uint8."""
    cv2 = pytest.importorskip("cv2")
    skimage = pytest.importorskip("skimage")
    path = Path(skimage.__file__).parent / "data" / "chelsea.png"
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
