"""Held-out evaluation: PSNR/SSIM on Y (border = scale) for bicubic, Lanczos and models, on
clean LR and on LR sent through H.264 at CRF 23 and 30 (how video reaches rtsr), and flicker:
a temporal metric on held-out photos panned by a known sub-pixel motion (`temporal_metrics`).

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
from rtsr.quality import downscale_image, psnr_y, rgb_to_y, ssim_y
from train.data import debs_cached, h264_roundtrip, h264_roundtrip_frames, load_split

EVAL_CRFS = (23, 30)  # typical and heavy H.264 compression of the LR input
# The temporal metric's pan: 2 HR pixels right and 1 down per frame, which is 0.5 and 0.25 LR
# pixels at x4: every frame samples the scene at a new sub-pixel phase, as a panning camera does,
# while undoing the motion on the output is an exact integer shift (the ground truth's own
# frame-to-frame difference after it is exactly zero).
PAN_HR = (2, 1)
PAN_FRAMES = 12
PAN_HR_SIZE = (640, 480)   # at most this much of each photo's centre is panned (W x H, HR)


def _crop_to_multiple(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[0] // scale * scale, img.shape[1] // scale * scale
    return img[:h, :w]


def inference_form(generator: Generator) -> Generator:
    """BatchNorm folded and channels_last, as rtsr's torch backend runs it: the same numbers
    (within 3e-6), ~20% faster on CPU, which the card tests' minutes feel."""
    return fold_batchnorm(generator).to(memory_format=torch.channels_last).eval()


@torch.inference_mode()
def sr_image(generator: Generator, lr: np.ndarray) -> np.ndarray:
    """`lr` (uint8 RGB) through `generator` (best in its `inference_form`), as uint8 RGB."""
    x = (torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255).contiguous(memory_format=torch.channels_last)
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
    folded = inference_form(generator)
    return evaluate(lambda lr: sr_image(folded, lr), images, generator.scale, crf)


def compressed_metrics(generator: Generator, images: dict[str, np.ndarray],
                       crfs: tuple[int, ...] = EVAL_CRFS) -> dict[str, dict[str, float]]:
    """Per CRF: the model's PSNR/SSIM and bicubic's on H.264-compressed LR."""
    bicubic = _resize(generator.scale, cv2.INTER_CUBIC)
    return {f"h264_crf{crf}": {**evaluate_generator(generator, images, crf),
                               "bicubic": evaluate(bicubic, images, generator.scale, crf)}
            for crf in crfs}


def panned_clip(hr: np.ndarray, scale: int, frames: int = PAN_FRAMES, pan: tuple[int, int] = PAN_HR,
                size: tuple[int, int] = PAN_HR_SIZE) -> list[np.ndarray]:
    """HR frames of a static photo seen by a camera panning `pan` HR pixels per frame: crops of
    the photo's centre at integer offsets (no resampling), sides a multiple of 2 * scale."""
    step = 2 * scale
    span_x, span_y = pan[0] * (frames - 1), pan[1] * (frames - 1)
    w = min(size[0], hr.shape[1] - span_x) // step * step
    h = min(size[1], hr.shape[0] - span_y) // step * step
    x0, y0 = (hr.shape[1] - w - span_x) // 2, (hr.shape[0] - h - span_y) // 2
    return [hr[y0 + t * pan[1]:y0 + t * pan[1] + h, x0 + t * pan[0]:x0 + t * pan[0] + w] for t in range(frames)]


def flicker(frames: list[np.ndarray], pan: tuple[int, int] = PAN_HR, border: int = 4) -> float:
    """RMS (Y levels, 0..255 scale) of the difference between consecutive frames after undoing
    the known pan: frame t+1 moved back by `pan` against frame t, on the part both see, with
    `border` more pixels cropped. The ground truth of `panned_clip` scores exactly 0; what a model
    scores is the flicker and crawl it adds."""
    dx, dy = pan
    diffs = []
    for a, b in zip(frames, frames[1:]):
        ya, yb = rgb_to_y(a), rgb_to_y(b)
        h, w = ya.shape
        # scene point (x, y) is at (x, y) in frame t and at (x - dx, y - dy) in frame t+1
        now = ya[dy + border:h - border, dx + border:w - border]
        nxt = yb[border:h - dy - border, border:w - dx - border]
        diffs.append(np.mean((now - nxt) ** 2))
    return float(np.sqrt(np.mean(diffs)))


def temporal_metrics(upscale, images: dict[str, np.ndarray], scale: int,
                     crfs: tuple[int | None, ...] = (None, 23)) -> dict[str, dict[str, float]]:
    """Per input kind (clean LR, LR clip through H.264 with P/B frames at each CRF): the mean
    `flicker` over `images` of `upscale`'s output and of bicubic's, and of the LR clip itself
    (in LR pixels, for scale). Lower is steadier; 0 is the ground truth."""
    bicubic = _resize(scale, cv2.INTER_CUBIC)
    out = {}
    for crf in crfs:
        model, bic = [], []
        for hr in images.values():
            lr = [downscale_image(f, scale) for f in panned_clip(hr, scale)]
            if crf is not None:
                lr = h264_roundtrip_frames(lr, crf)
            model.append(flicker([upscale(f) for f in lr]))
            bic.append(flicker([bicubic(f) for f in lr]))
        out["clean" if crf is None else f"h264_crf{crf}"] = {"flicker": round(float(np.mean(model)), 3),
                                                             "bicubic": round(float(np.mean(bic)), 3)}
    return out


def generator_temporal_metrics(generator: Generator, images: dict[str, np.ndarray],
                               crfs: tuple[int | None, ...] = (None, 23)) -> dict[str, dict[str, float]]:
    folded = inference_form(generator)
    return temporal_metrics(lambda lr: sr_image(folded, lr), images, generator.scale, crfs)


def per_photo_gains(generator: Generator, images: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean PSNR-Y (and SSIM-Y) of the model and bicubic over `images`, and each photo's gain over
    bicubic (dB): the mean can hide a photo that loses."""
    folded, scale = inference_form(generator), generator.scale
    bicubic = _resize(scale, cv2.INTER_CUBIC)
    model = {name: evaluate(lambda lr: sr_image(folded, lr), {name: hr}, scale) for name, hr in images.items()}
    bic = {name: evaluate(bicubic, {name: hr}, scale) for name, hr in images.items()}

    def mean(results: dict[str, dict[str, float]], key: str) -> float:
        return float(np.mean([r[key] for r in results.values()]))

    return {"photos": sorted(images), "psnr_y": round(mean(model, "psnr_y"), 3),
            "ssim_y": round(mean(model, "ssim_y"), 4), "bicubic_psnr_y": round(mean(bic, "psnr_y"), 3),
            "bicubic_ssim_y": round(mean(bic, "ssim_y"), 4),
            "gain_vs_bicubic_db": round(mean(model, "psnr_y") - mean(bic, "psnr_y"), 3),
            "gain_per_photo_db": {n: round(model[n]["psnr_y"] - bic[n]["psnr_y"], 3) for n in sorted(images)}}


def main() -> None:
    parser = argparse.ArgumentParser(description="evaluate models on the held-out photos")
    parser.add_argument("weights", nargs="*", type=Path, help="weights files (default: every shipped model)")
    parser.add_argument("--write-cards", action="store_true", help="store the numbers in each model's card")
    parser.add_argument("--no-debs", action="store_true", help="leave out the Debian packages' held-out photos")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    images = load_split("heldout")
    # the Debian packages' held-out photos, where they are cached (no download from here)
    debs_images = load_split("heldout_debs", debs=True) if debs_cached() and not args.no_debs else {}
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
        temporal = generator_temporal_metrics(generator, images)
        for key, m in temporal.items():
            print(f"  {'':<22} flicker, panned {key}: {m['flicker']:.3f} Y levels RMS (bicubic {m['bicubic']:.3f})")
        debs = per_photo_gains(generator, debs_images) if debs_images else None
        if debs:
            print(f"  {'':<22} wallpaper photos held out: PSNR-Y {debs['psnr_y']:.3f} dB "
                  f"({debs['gain_vs_bicubic_db']:+.2f} dB vs bicubic; "
                  + ", ".join(f"{n} {g:+.2f}" for n, g in debs["gain_per_photo_db"].items()) + ")")
        if args.write_cards:
            card.metrics = {"heldout": sorted(images), "border": generator.scale, **metrics,
                            "bicubic": base["bicubic"], "lanczos": base["lanczos"],
                            "gain_vs_bicubic_db": round(gain, 3), **compressed,
                            "temporal": {"pan_hr_px_per_frame": list(PAN_HR), "frames": PAN_FRAMES,
                                         "unit": "RMS Y difference of consecutive frames after undoing the pan",
                                         **temporal},
                            **({"heldout_debs": debs} if debs else {})}
            save_weights(path, generator, card)


if __name__ == "__main__":
    main()
