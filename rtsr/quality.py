"""How super-resolution quality is measured: the degradation, and PSNR/SSIM on luma.

Shared by training, evaluation, tests and benchmarks so every number in the project means the
same thing (Y channel of BT.601 as in SR papers, `scale` pixels of border cropped).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic downscaling with antialiasing (MATLAB imresize-like): N x C x H x W float."""
    h, w = hr.shape[-2] // scale, hr.shape[-1] // scale
    return F.interpolate(hr, size=(h, w), mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)


def downscale_image(hr: np.ndarray, scale: int) -> np.ndarray:
    """uint8 H x W x 3 -> uint8 (H//s) x (W//s) x 3 with `downscale`."""
    x = torch.from_numpy(hr).permute(2, 0, 1)[None].float() / 255
    return (downscale(x, scale)[0].permute(1, 2, 0) * 255).round().byte().numpy()


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """uint8/float RGB in 0..255 -> float64 luma in 16..235 (BT.601, as SR papers report)."""
    img = img.astype(np.float64)
    return 16.0 + (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0


def _crop(a: np.ndarray, border: int) -> np.ndarray:
    return a[border:-border, border:-border] if border else a


def psnr_y(ref: np.ndarray, test: np.ndarray, border: int = 0) -> float:
    """PSNR in dB on the Y channel of two uint8 RGB images of the same size."""
    a, b = _crop(rgb_to_y(ref), border), _crop(rgb_to_y(test), border)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim_y(ref: np.ndarray, test: np.ndarray, border: int = 0) -> float:
    """SSIM (Wang et al. 2004, 11x11 Gaussian, sigma 1.5) on the Y channel."""
    import cv2

    a, b = _crop(rgb_to_y(ref), border), _crop(rgb_to_y(test), border)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())
