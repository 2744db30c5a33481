"""Held-out evaluation: PSNR/SSIM on Y (border = scale) for bicubic, Lanczos and models, on
clean LR and on LR sent through H.264 at CRF 23 and 30 (how video reaches rtsr).

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
from train.data import h264_roundtrip, load_split

EVAL_CRFS = (23, 30)  # typical and heavy H.264 compression of the LR input


def _crop_to_multiple(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[0] // scale * scale, img.shape[1] // scale * scale
    return img[:h, :w]


@torch.inference_mode()
def sr_image(generator: Generator, lr: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    y = generator(x).clamp_(0, 1)
    return (y[0].permute(1, 2, 0) * 255).round().byte().numpy()


def evaluate(upscale, images: dict[str, np.ndarray], scale: int, crf: int | None = None) -> dict[str, float]:
    """Mean PSNR/SSIM of `upscale(lr) -> sr` over `images` (HR uint8 RGB); with `crf`, the LR
    image goes through H.264 at that CRF first."""
    psnrs, ssims = [], []
    for hr in images.values():
        hr = _crop_to_multiple(hr, scale if crf is None else 2 * scale)  # even LR sides for 4:2:0
        lr = downscale_image(hr, scale)
        sr = upscale(h264_roundtrip(lr, crf) if crf is not None else lr)
        psnrs.append(psnr_y(hr, sr, border=scale))
        ssims.append(ssim_y(hr, sr, border=scale))
    return {"psnr_y": round(float(np.mean(psnrs)), 3), "ssim_y": round(float(np.mean(ssims)), 4)}


def _resize(scale: int, interp: int):
    return lambda lr: cv2.resize(lr, (lr.shape[1] * scale, lr.shape[0] * scale), interpolation=interp)


def baselines(images: dict[str, np.ndarray], scale: int) -> dict[str, dict[str, float]]:
    return {"bicubic": evaluate(_resize(scale, cv2.INTER_CUBIC), images, scale),
            "lanczos": evaluate(_resize(scale, cv2.INTER_LANCZOS4), images, scale)}


def evaluate_generator(generator: Generator, images: dict[str, np.ndarray], crf: int | None = None) -> dict[str, float]:
    folded = fold_batchnorm(generator)
    return evaluate(lambda lr: sr_image(folded, lr), images, generator.scale, crf)


def compressed_metrics(generator: Generator, images: dict[str, np.ndarray],
                       crfs: tuple[int, ...] = EVAL_CRFS) -> dict[str, dict[str, float]]:
    """Per CRF: the model's PSNR/SSIM and bicubic's on H.264-compressed LR."""
    bicubic = _resize(generator.scale, cv2.INTER_CUBIC)
    return {f"h264_crf{crf}": {**evaluate_generator(generator, images, crf),
                               "bicubic": evaluate(bicubic, images, generator.scale, crf)}
            for crf in crfs}


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
        compressed = compressed_metrics(generator, images)
        for key, m in compressed.items():
            print(f"  {'':<22} {key}: PSNR-Y {m['psnr_y']:.3f} dB ({m['psnr_y'] - m['bicubic']['psnr_y']:+.2f} dB "
                  f"vs bicubic {m['bicubic']['psnr_y']:.3f})")
        if args.write_cards:
            card.metrics = {"heldout": sorted(images), "border": generator.scale, **metrics,
                            "bicubic": base["bicubic"], "lanczos": base["lanczos"],
                            "gain_vs_bicubic_db": round(gain, 3), **compressed}
            save_weights(path, generator, card)


if __name__ == "__main__":
    main()
