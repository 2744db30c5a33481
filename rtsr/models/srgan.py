"""SRGAN generator and discriminator (Ledig et al. 2017, arXiv 1609.04802, fig. 4).

The generator is the SRResNet body; the same network is trained with MSE (stage 1) and then
adversarially (stage 2). `fold_batchnorm` turns a trained generator into its inference form.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from rtsr.models.config import DiscriminatorConfig, GeneratorConfig


class ResidualBlock(nn.Module):
    """conv3x3-BN-PReLU-conv3x3-BN with an identity skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1: nn.Module = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2: nn.Module = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class UpsampleBlock(nn.Sequential):
    """conv3x3 C->4C, PixelShuffle(2), PReLU: one factor of two."""

    def __init__(self, channels: int) -> None:
        super().__init__(
            nn.Conv2d(channels, channels * 4, 3, padding=1),
            nn.PixelShuffle(2),
            nn.PReLU(channels),
        )


class Generator(nn.Module):
    """SRResNet generator: x in [0, 1], N x 3 x H x W -> N x 3 x sH x sW (unclamped)."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c, k = config.channels, config.head_kernel
        self.head = nn.Sequential(nn.Conv2d(config.in_channels, c, k, padding=k // 2), nn.PReLU(c))
        self.body = nn.Sequential(*(ResidualBlock(c) for _ in range(config.num_blocks)))
        self.body_conv = nn.Conv2d(c, c, 3, padding=1)
        self.body_bn: nn.Module = nn.BatchNorm2d(c)
        self.upsample = nn.Sequential(*(UpsampleBlock(c) for _ in range(config.upsample_stages)))
        self.tail = nn.Conv2d(c, config.in_channels, k, padding=k // 2)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        feat = feat + self.body_bn(self.body_conv(self.body(feat)))
        out = self.tail(self.upsample(feat))
        if self.config.skip == "bicubic":
            out = out + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return out


class Discriminator(nn.Module):
    """The paper's discriminator: 8 conv blocks (stride 1/2 alternating), dense 1024, dense 1.

    Adaptive pooling to 6x6 keeps the paper's 96x96 geometry while accepting other patch sizes.
    Returns logits (use with BCEWithLogits).
    """

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        config = config or DiscriminatorConfig()
        layers: list[nn.Module] = []
        in_ch, out_ch = config.in_channels, config.base_channels
        for i in range(config.num_blocks):
            stride = 1 if i % 2 == 0 else 2
            if i > 0 and i % 2 == 0:
                out_ch *= 2
            layers.append(nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.LeakyReLU(config.negative_slope, inplace=True))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_ch * 36, config.dense),
            nn.LeakyReLU(config.negative_slope, inplace=True),
            nn.Linear(config.dense, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a conv equal to bn(conv(x)) in eval mode."""
    fused = copy.deepcopy(conv)
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    factor = gamma / std
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * factor.reshape(-1, 1, 1, 1))
        fused.bias = nn.Parameter((bias - bn.running_mean) * factor + beta)
    return fused


def residual_part(generator: Generator) -> Generator:
    """A copy of `generator` without its bicubic skip: the residual it adds to the bicubic upscale.

    That residual stays within about +-0.2, where bf16's 8 significant bits are fine; a [0, 1]
    output rounded to them is off by up to half a code value. A backend computing in bf16 runs
    this part and adds the skip in fp32.
    """
    residual = Generator(replace(generator.config, skip="none"))
    residual.load_state_dict(generator.state_dict())
    return residual.eval()


def fold_batchnorm(generator: Generator) -> Generator:
    """A copy of `generator` with every BatchNorm folded into the conv before it.

    Inference then runs convolutions only, which is what TensorRT and cuDNN fuse best.
    """
    folded = copy.deepcopy(generator).eval()
    for block in folded.body:
        assert isinstance(block, ResidualBlock)
        if isinstance(block.bn1, nn.BatchNorm2d):
            block.conv1, block.bn1 = _fold(block.conv1, block.bn1), nn.Identity()
            block.conv2, block.bn2 = _fold(block.conv2, block.bn2), nn.Identity()
    if isinstance(folded.body_bn, nn.BatchNorm2d):
        folded.body_conv, folded.body_bn = _fold(folded.body_conv, folded.body_bn), nn.Identity()
    return folded
