"""Held-out evaluation: PSNR/SSIM on Y (border = scale) for bicubic, Lanczos and models.

`python -m train.evaluate` measures every shipped model and, with `--write-cards`, stores the
numbers in each model's card so README and `rtsr models` show measured, reproducible values.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from rtsr.models.srgan import Generator, fold_batchnorm
from rtsr.models.weights import load_weights, save_weights, shipped_models
from rtsr.quality import downscale_image, psnr_y, ssim_y
from train.data import load_split


def _crop_to_multiple(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[0] // scale * scale, img.shape[1] // scale * scale
    return img[:h, :w]


@torch.inference_mode()
def sr_image(generator: Generator, lr: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    y = generator(x).clamp_(0, 1)
    return (y[0].permute(1, 2, 0) * 255).round().byte().numpy()


def evaluate(upscale, images: dict[str, np.ndarray], scale: int) -> dict[str, float]:
    """Mean PSNR/SSIM of `upscale(lr) -> sr` over `images` (HR uint8 RGB)."""
    psnrs, ssims = [], []
    for hr in images.values():
        hr = _crop_to_multiple(hr, scale)
        sr = upscale(downscale_image(hr, scale))
        psnrs.append(psnr_y(hr, sr, border=scale))
        ssims.append(ssim_y(hr, sr, border=scale))
    return {"psnr_y": round(float(np.mean(psnrs)), 3), "ssim_y": round(float(np.mean(ssims)), 4)}


def baselines(images: dict[str, np.ndarray], scale: int) -> dict[str, dict[str, float]]:
    def resize(interp: int):
        return lambda lr: cv2.resize(lr, (lr.shape[1] * scale, lr.shape[0] * scale), interpolation=interp)

    return {"bicubic": evaluate(resize(cv2.INTER_CUBIC), images, scale),
            "lanczos": evaluate(resize(cv2.INTER_LANCZOS4), images, scale)}


def evaluate_generator(generator: Generator, images: dict[str, np.ndarray]) -> dict[str, float]:
    folded = fold_batchnorm(generator)
    return evaluate(lambda lr: sr_image(folded, lr), images, generator.scale)


def main() -> None:
    parser = argparse.ArgumentParser(description="evaluate models on the held-out photos")
    parser.add_argument("weights", nargs="*", type=Path, help="weights files (default: every shipped model)")
    parser.add_argument("--write-cards", action="store_true", help="store the numbers in each model's card")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    images = load_split("heldout")
    paths = args.weights or list(shipped_models().values())
    base_cache: dict[int, dict[str, dict[str, float]]] = {}
    print(f"held-out photos: {', '.join(images)}")
    for path in paths:
        generator, card = load_weights(path)
        base = base_cache.setdefault(generator.scale, baselines(images, generator.scale))
        if len(base_cache) == 1 and path == paths[0]:
            for name, m in base.items():
                print(f"  {name:<22} x{generator.scale}  PSNR-Y {m['psnr_y']:.3f} dB  SSIM-Y {m['ssim_y']:.4f}")
        metrics = evaluate_generator(generator, images)
        gain = metrics["psnr_y"] - base["bicubic"]["psnr_y"]
        print(f"  {card.name:<22} x{generator.scale}  PSNR-Y {metrics['psnr_y']:.3f} dB  "
              f"SSIM-Y {metrics['ssim_y']:.4f}  ({gain:+.2f} dB vs bicubic)")
        if args.write_cards:
            card.metrics = {"heldout": sorted(images), "border": generator.scale, **metrics,
                            "bicubic": base["bicubic"], "lanczos": base["lanczos"],
                            "gain_vs_bicubic_db": round(gain, 3)}
            save_weights(path, generator, card)


if __name__ == "__main__":
    main()
