"""VGG19 feature extractor for the paper's content loss, without torchvision.

torchvision does not import with the CPU torch build here and no weights can be downloaded, so
the layers are written out in torchvision's `vgg19().features` order: a torchvision-format
ImageNet state dict (keys `features.N.weight`) given by path loads into it unchanged.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rtsr.errors import RtsrError

# torchvision's vgg19 "E" configuration; "M" is a 2x2 max-pool
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# phi(5,4): the feature map after the 4th conv (and its ReLU) of block 5, before the last pool
PHI_54_INDEX = 35
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """VGG19 conv layers up to phi(5,4); inputs in [0, 1], ImageNet normalisation inside."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = int(v)
        self.features = nn.Sequential(*layers[: PHI_54_INDEX + 1])
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)

    @classmethod
    def from_torchvision_weights(cls, path: Path) -> "VGG19Features":
        """Load torchvision's vgg19 ImageNet weights (a .pth state dict) and freeze them."""
        model = cls()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise RtsrError(f"cannot read VGG19 weights {path}: {exc}") from None
        wanted = {k: v for k, v in state.items() if k.startswith("features.")
                  and int(k.split(".")[1]) <= PHI_54_INDEX}
        missing, _ = model.load_state_dict(wanted, strict=False)
        if [m for m in missing if m.startswith("features.")]:
            raise RtsrError(f"{path} is not a torchvision vgg19 state dict (missing {missing[:2]})")
        for p in model.parameters():
            p.requires_grad_(False)
        return model.eval()
