"""Training data: natural photos that installed packages ship, collected by a script.

`python -m train.data` copies them into train/data/{train,heldout,heldout_debs}/ and writes a
manifest with sources and licences. The held-out splits are fixed by name and never sampled by
training: `heldout` comes from installed packages (so the cards reproduce without any download),
`heldout_debs` from the pinned Debian packages below (measured where they are cached).
"""
from __future__ import annotations

import argparse
import bz2
import functools
import logging
import math
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch
import yaml

from rtsr.quality import downscale
from rtsr.video.color import (RANGE_LIMITED, SPACE_SMPTE170M, ColorSpec, luma_coefficients, rgb_to_yuv420,
                              yuv_to_rgb)

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


@dataclass(frozen=True)
class WheelSource:
    """A photo inside a wheel on the package registry, fetched with `pip download --no-deps`.

    Wheels are pinned so the training set never changes under a config; nothing is installed.
    """

    name: str
    wheel: str          # pinned requirement, e.g. "imgaug==0.4.0"
    member: str         # path inside the wheel
    licence: str
    raw_shape: tuple[int, int, int] | None = None   # bz2-compressed raw RGB (scipy's face.dat)


_PYIQA = "pyiqa==0.1.16"
_PYIQA_TID = "TID2013 reference (Kodak PhotoCD, unrestricted use), via pyiqa"
WHEEL_SOURCES: tuple[WheelSource, ...] = (
    WheelSource("quokka", "imgaug==0.4.0", "imgaug/quokka.jpg", "shipped with imgaug (MIT)"),
    WheelSource("department_store", "mahotas==1.4.19", "mahotas/demos/data/DepartmentStore.jpg",
                "shipped with mahotas (MIT)"),
    WheelSource("luispedro", "mahotas==1.4.19", "mahotas/demos/data/luispedro.jpg", "shipped with mahotas (MIT)"),
    WheelSource("bus", "ultralytics==8.4.190", "ultralytics/assets/bus.jpg", "shipped with ultralytics (AGPL-3.0)"),
    WheelSource("zidane", "ultralytics==8.4.190", "ultralytics/assets/zidane.jpg",
                "shipped with ultralytics (AGPL-3.0)"),
    *(WheelSource(f"tid_{i}", _PYIQA, f"ResultsCalibra/ref_dir/{i}.bmp", _PYIQA_TID)
      for i in ("I03", "I04", "I06", "I08", "I19")),
    *(WheelSource(f"pyiqa_{stem.lower()}", _PYIQA, f"tests/test_efficiency_img_dir/{stem}.jpg",
                  "shipped with pyiqa (test photo)")
      for stem in ("frame_4wrwr48cdk6rbcjl", "frame_9ogwhvvy7gfj6jzh", "frame_7gzdcz9sif0ekg31", "SPAQ_10241")),
    WheelSource("face", "scipy==1.9.3", "scipy/misc/face.dat", "shipped with scipy (BSD-3)", (768, 1024, 3)),
)
WHEEL_DIR = Path(__file__).resolve().parent / "data" / "wheels"


@dataclass(frozen=True)
class DebSource:
    """A photo inside a Debian package, fetched by pinned version with `apt-get download` and
    unpacked with `dpkg -x` into a cache folder; nothing is installed. The licence is the one the
    package's /usr/share/doc/PACKAGE/copyright gives for that file."""

    name: str
    package: str        # pinned "name=version"
    member: str         # path inside the package
    licence: str


# Only the photographs of these packages; their drawn or rendered artwork is left out (all of
# lomiri-wallpapers and ukui-wallpapers, mate-backgrounds' abstract/ and desktop/, lomiri 20.04's
# Fossa, Infinite-Sea and Painting-Colors). No other Debian wallpaper package may be added: the
# maintainers keep some of those as unseen test photos.
_LOMIRI_16 = "lomiri-wallpapers-16.04=20.04.0-2"
_LOMIRI_20 = "lomiri-wallpapers-20.04=20.04.0-2"
_MATE = "mate-backgrounds=1.26.0-1"


def _lomiri(name: str, package: str, stem: str, licence: str) -> DebSource:
    author = stem.split("_by_")[1].replace("_", " ").strip()
    return DebSource(name, package, f"usr/share/backgrounds/{stem}.jpg",
                     f"{licence} ({author}), per debian/copyright of {package.split('=')[0]}")


def _mate(name: str, stem: str, author: str) -> DebSource:
    return DebSource(name, _MATE, f"usr/share/backgrounds/mate/nature/{stem}.jpg",
                     f"GPL-2+ ({author}), per debian/copyright of mate-backgrounds")


DEB_SOURCES: tuple[DebSource, ...] = (
    _lomiri("bridge", _LOMIRI_16, "Bridge_by_Sander_Klootwijk", "CC-BY-SA-4.0"),          # sky, held out
    _lomiri("dragonfly", _LOMIRI_16, "Dragonfly_by_Bolly", "CC-BY-SA-4.0"),
    _lomiri("fig", _LOMIRI_16, "Picture_0B_by_freespace", "CC-BY-4.0"),
    _lomiri("brushes", _LOMIRI_16, "Picture_1A_by_freespace", "CC-BY-4.0"),
    _lomiri("wine", _LOMIRI_16, "Wine_by_Jakkub_Mede", "CC-BY-4.0"),
    _lomiri("aitzgorri", _LOMIRI_16, "aitzgorri_by_Aitzol_Berasategi", "CC-BY-4.0"),
    _lomiri("analogpattern", _LOMIRI_16, "analogpattern_by_Peter_Nerlich", "CC-BY-SA-4.0"),
    _lomiri("free", _LOMIRI_16, "free_by_Peter_Nerlich", "CC-BY-SA-4.0"),
    _lomiri("friends", _LOMIRI_16, "friends_by_Aitzol_Berasategi", "CC-BY-4.0"),
    _lomiri("greentock", _LOMIRI_16, "greentock_by_Peter_Nerlich", "CC-BY-SA-4.0"),
    _lomiri("life", _LOMIRI_16, "life_by_Aitzol_Berasategi", "CC-BY-4.0"),                # stream, held out
    _lomiri("picosdeeuropa", _LOMIRI_16, "picosdeeuropa_by_Aitzol_Berasategi", "CC-BY-4.0"),
    _lomiri("seeding", _LOMIRI_16, "seeding_by_Clements_Engelhardt", "CC0-1.0"),
    _lomiri("sunset", _LOMIRI_16, "sunset_by_Aitzol_Berasategi", "CC-BY-4.0"),
    _lomiri("kleiber", _LOMIRI_20, "Kleiber_by_Lukas_Baubkus", "CC-BY-SA-3.0"),
    _mate("aqua", "Aqua", "Charles Barbin"),                                              # water, held out
    _mate("blinds", "Blinds", "Lennart Poettering, Andrea Cimitan"),
    _mate("dune", "Dune", "Marco Cogoni, Hylke Bons"),
    _mate("fresh_flower", "FreshFlower", "Jens Ansorg"),
    _mate("garden", "Garden", "Charles Barbin"),
    _mate("green_meadow", "GreenMeadow", "Timothy Schellhase, Lapo Calamandrei"),        # foliage, held out
    _mate("ladybird", "LadyBird", "Charles Barbin"),
    _mate("rain_drops", "RainDrops", "blackcombwhistler07"),
    _mate("storm", "Storm", "Sergey Nazarov"),                                            # sky, held out
    _mate("two_wings", "TwoWings", "Charles Barbin, Hylke Bons"),
    _mate("wood", "Wood", "Jean-Francois Fortin Tam"),
    _mate("yellow_flower", "YellowFlower", "Charles Barbin"),
)
# smooth sky, a stream through foliage and rock, a water drop, grass, storm clouds
DEB_HELDOUT = frozenset({"bridge", "life", "aqua", "green_meadow", "storm"})
DEB_DIR = Path(__file__).resolve().parent / "data" / "debs"


def _unpacked_deb(requirement: str, deb_dir: Path) -> Path:
    """The folder a pinned package is unpacked in (`dpkg -x`), downloaded once into deb_dir."""
    package, version = requirement.split("=")
    root = deb_dir / f"{package}_{version}"
    if root.is_dir():
        return root
    deb_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(deb_dir.glob(f"{package}_{version.replace(':', '%3a')}_*.deb"))
    if not found:
        log.info("fetching %s", requirement)
        subprocess.run(["apt-get", "download", "-q", requirement], cwd=deb_dir, check=True)
        found = sorted(deb_dir.glob(f"{package}_{version.replace(':', '%3a')}_*.deb"))
    if not found:
        raise FileNotFoundError(f"apt-get download gave no package for {requirement} in {deb_dir}")
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["dpkg", "-x", str(found[0]), str(tmp)], check=True)
    tmp.rename(root)
    return root


def debs_cached(deb_dir: Path = DEB_DIR) -> bool:
    """Whether every pinned package is unpacked in deb_dir (then no download is needed)."""
    return all((deb_dir / req.replace("=", "_")).is_dir() for req in {s.package for s in DEB_SOURCES})


def _read_deb_photo(src: DebSource, deb_dir: Path) -> np.ndarray:
    """BGR uint8 image of one package member."""
    path = _unpacked_deb(src.package, deb_dir) / src.member
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"{src.package} does not ship {src.member}")
    return img


def _package_dir(name: str) -> Path:
    module = __import__(name)
    return Path(module.__file__).resolve().parent


def _fetch_wheel(requirement: str, wheel_dir: Path) -> Path:
    """The wheel file for a pinned requirement, downloaded once into wheel_dir."""
    project, version = requirement.split("==")
    pattern = f"{project.replace('-', '_')}-{version}-*.whl"
    found = sorted(wheel_dir.glob(pattern))
    if not found:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        # Pinned to CPython 3.11 manylinux wheels: the photo is the same in every build of a version,
        # and an old pin (scipy 1.9.3) has no wheel for newer interpreters.
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
               "--platform", "manylinux2014_x86_64", "--dest", str(wheel_dir), requirement]
        log.info("fetching %s", requirement)
        subprocess.run(cmd, check=True)
        found = sorted(wheel_dir.glob(pattern))
    if not found:
        raise FileNotFoundError(f"pip download gave no wheel for {requirement} in {wheel_dir}")
    return found[0]


def _read_wheel_photo(src: WheelSource, wheel_dir: Path) -> np.ndarray:
    """BGR uint8 image of one wheel member."""
    with zipfile.ZipFile(_fetch_wheel(src.wheel, wheel_dir)) as zf:
        data = zf.read(src.member)
    if src.raw_shape is not None:
        return np.frombuffer(bz2.decompress(data), np.uint8).reshape(src.raw_shape)[..., ::-1].copy()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{src.wheel}:{src.member} is not an image")
    return img


def _read_package_photo(src: Source) -> np.ndarray:
    """BGR uint8 image shipped by an installed package; gray sources become 3 equal planes."""
    path = _package_dir(src.package) / src.relpath
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"{src.package} does not ship {src.relpath}")
    return img


def _split_of(name: str) -> str:
    return "heldout" if name in HELDOUT else "heldout_debs" if name in DEB_HELDOUT else "train"


def collect(out_dir: Path = DATA_DIR, wheels: bool = True, wheel_dir: Path = WHEEL_DIR,
            debs: bool = True, deb_dir: Path = DEB_DIR) -> dict[str, list[str]]:
    """Copy every source photo as RGB PNG into out_dir/{train,heldout,heldout_debs}/; return the split.

    wheels=False keeps to the photos of installed packages (no registry access), debs=False leaves
    out the Debian packages' photos; the shipped models record which set they were trained on.
    """
    split: dict[str, list[str]] = {"train": [], "heldout": [], "heldout_debs": []}
    manifest = []
    photos = [(src.name, f"{src.package}/{src.relpath}", src.licence, lambda s=src: _read_package_photo(s))
              for src in SOURCES]
    if wheels:
        photos += [(src.name, f"{src.wheel}:{src.member}", src.licence,
                    lambda s=src: _read_wheel_photo(s, wheel_dir)) for src in WHEEL_SOURCES]
    if debs:
        photos += [(src.name, f"debian {src.package}:/{src.member}", src.licence,
                    lambda s=src: _read_deb_photo(s, deb_dir)) for src in DEB_SOURCES]
    for name, source, licence, read in photos:
        part = _split_of(name)
        dest = out_dir / part / f"{name}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        img = read()
        # a fast PNG level: the big wallpapers (up to 6000x4000) are written once and read often
        cv2.imwrite(str(dest), img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        split[part].append(name)
        manifest.append({"name": name, "split": part, "source": source, "licence": licence,
                         "size": [img.shape[1], img.shape[0]]})
    with (out_dir / "manifest.yaml").open("w") as fh:
        yaml.safe_dump(manifest, fh, sort_keys=False)
    return split


def load_split(part: str, data_dir: Path = DATA_DIR, wheels: bool = False, debs: bool = False) -> dict[str, np.ndarray]:
    """RGB uint8 images of one split, collecting them first if needed.

    wheels=True also needs the wheel photos and debs=True the Debian packages' photos (training;
    `heldout_debs` needs debs=True). The `heldout` photos never come from either, so the cards'
    evaluation works without registry access.
    """
    manifest = data_dir / "manifest.yaml"
    have = {row["name"] for row in yaml.safe_load(manifest.read_text())} if manifest.is_file() else set()
    needed = ({src.name for src in SOURCES} | ({src.name for src in WHEEL_SOURCES} if wheels else set())
              | ({src.name for src in DEB_SOURCES} if debs else set()))
    if not needed <= have:
        collect(data_dir, wheels=wheels or bool(have & {s.name for s in WHEEL_SOURCES}),
                debs=debs or bool(have & {s.name for s in DEB_SOURCES}))
    files = sorted((data_dir / part).glob("*.png"))
    return {p.stem: _decoded_png(str(p), p.stat().st_mtime_ns).copy() for p in files}


@functools.lru_cache(maxsize=None)
def _decoded_png(path: str, mtime_ns: int) -> np.ndarray:
    """A photo decoded once per process (keyed by its mtime: a re-collected file is read again):
    decoding the 54 PNGs took 5.8 s of each 11 s four-step test run; callers get copies. A training
    process keeps this one copy beside its sampler's (0.45 GiB more with every training photo)."""
    return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)


def subsample_chroma(rgb: torch.Tensor) -> torch.Tensor:
    """RGB (N,3,H,W) in [0,1] through BT.601 4:2:0 and back: chroma averaged per 2x2, then
    bilinearly upsampled, as an encoder and a decoder do to every video frame. Unquantised and
    centre-sited (the video path's converters in rtsr/video/color.py work on 8-bit planes); the
    LR patch is quantised to 8 bits afterwards anyway."""
    kr, kg, kb = luma_coefficients("bt601")
    m = torch.tensor([[kr, kg, kb],
                      [-kr / (2 - 2 * kb), -kg / (2 - 2 * kb), 0.5],
                      [0.5, -kg / (2 - 2 * kr), -kb / (2 - 2 * kr)]])
    ycc = torch.einsum("ij,njhw->nihw", m, rgb)
    h, w = rgb.shape[-2:]
    chroma = torch.nn.functional.avg_pool2d(ycc[:, 1:], 2, ceil_mode=True)
    ycc = torch.cat([ycc[:, :1], torch.nn.functional.interpolate(chroma, size=(h, w), mode="bilinear",
                                                                 align_corners=False)], 1)
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(m), ycc).clamp(0, 1)


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """A uint8 C x H x W image blurred by a separable Gaussian (radius 3 sigma, edges reflected), uint8."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    taps = (taps / taps.sum()).to(torch.float32)
    x = torch.nn.functional.pad(img[:, None].float(), (radius, radius, radius, radius), mode="reflect")
    x = torch.nn.functional.conv2d(x, taps.view(1, 1, 1, -1))
    x = torch.nn.functional.conv2d(x, taps.view(1, 1, -1, 1))
    return x[:, 0].round().clamp(0, 255).to(torch.uint8)


def yuv420_roundtrip(rgb: torch.Tensor) -> torch.Tensor:
    """RGB (N,3,H,W) in [0,1], even sides, through rtsr's own 8-bit limited-range 4:2:0
    conversions and back (rtsr/video/color.py): what the video path hands the model for a lossless
    4:2:0 frame, chroma left-sited and the RGB off the 8-bit grid (it is not rounded again)."""
    return yuv_to_rgb(*rgb_to_yuv420(rgb, _SD_SPEC), _SD_SPEC)


def h264_roundtrip(img: np.ndarray, crf: int) -> np.ndarray:
    """An RGB uint8 image (even sides) through libx264 (yuv420p, one intra frame at `crf`) and
    back: the blocking, ringing and chroma loss of the compressed video rtsr is given."""
    return h264_roundtrip_frames([img], crf)[0]


# BT.601 limited range, as an SD stream is tagged and as rtsr's pipeline reads an untagged one
_SD_SPEC = ColorSpec("bt601", False, SPACE_SMPTE170M, RANGE_LIMITED, 6, 6)


def h264_roundtrip_frames(frames: list[np.ndarray], crf: int) -> list[np.ndarray]:
    """RGB uint8 frames (even sides) encoded as one libx264 clip (yuv420p, `crf`, veryfast: I, P
    and B frames as a video has them) and decoded back, in display order.

    RGB <-> YUV 4:2:0 is rtsr's own conversion (rtsr/video/color.py, rounded, chroma sited as
    x264 writes it), as the video pipeline does it. libswscale's rgb24 <-> yuv420p round trip,
    used before, darkened every frame by about one Y level (measured on a smooth gradient: -0.99
    at CRF 18, -0.95 at CRF 32), and the models trained on it learned to brighten their output."""
    h, w = frames[0].shape[:2]
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    # Not bit-exact from call to call: the same clip gave one of two bitstreams at random, with
    # thread_count 1 and with x264's threads=1:sync-lookahead=0:lookahead-threads=1 alike; the
    # metrics move by ~0.01 (bicubic flicker 2.760 vs 2.773), inside the cards' tolerances.
    enc.time_base, enc.thread_count = Fraction(1, 24), 1
    enc.options = {"crf": str(crf), "preset": "veryfast"}
    rgb = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    y, u, v = (t.numpy() for t in rgb_to_yuv420(rgb, _SD_SPEC))
    packets = []
    for i in range(len(frames)):
        frame = av.VideoFrame(w, h, "yuv420p")
        for plane, data in zip(frame.planes, (y[i], u[i], v[i])):
            rows = np.zeros((data.shape[0], plane.line_size), np.uint8)
            rows[:, :data.shape[1]] = data
            plane.update(rows.tobytes())
        frame.pts = i
        packets += enc.encode(frame)
    packets += enc.encode(None)
    dec = av.CodecContext.create("h264", "r")
    decoded = sorted([f for p in packets for f in dec.decode(p)] + list(dec.decode(None)), key=lambda f: f.pts)

    def plane(f: av.VideoFrame, i: int) -> torch.Tensor:
        pl = f.planes[i]
        return torch.from_numpy(np.frombuffer(pl, np.uint8).reshape(pl.height, pl.line_size)[:, :pl.width].copy())

    out = yuv_to_rgb(*(torch.stack([plane(f, i) for f in decoded]) for i in range(3)), _SD_SPEC)
    return list((out * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())


class PatchSampler:
    """Random HR patches (crop, flip, 90-degree rotation) and their bicubic LR, as in the paper.

    Every photo is equally likely (as in an epoch over a dataset): weighting by area would let
    the one large, mostly smooth retina image supply a third of all patches. All randomness
    comes from one torch.Generator, so a seed fixes the whole data stream.
    """

    def __init__(self, images: list[np.ndarray], hr_patch: int, scale: int, seed: int,
                 noise_std: float = 0.0, chroma_subsample: float = 0.0, h264_share: float = 0.0,
                 h264_crf: tuple[int, int] = (18, 32), hr_blur: float = 0.0,
                 hr_blur_sigma: tuple[float, float] = (1.5, 3.0), yuv420_share: float = 0.0) -> None:
        self.images = [torch.from_numpy(im).permute(2, 0, 1).contiguous() for im in images]
        self.hr_patch, self.scale, self.noise_std = hr_patch, scale, noise_std
        self.chroma_subsample = chroma_subsample  # share of LR patches sent through 4:2:0, as video is
        self.h264_share, self.h264_crf = h264_share, h264_crf  # share through H.264 at a CRF in the range
        self.yuv420_share = yuv420_share  # share through the video path's own 8-bit 4:2:0 (yuv420_roundtrip)
        # share of HR crops blurred (Gaussian, sigma in HR pixels, drawn uniformly) before the LR is
        # made from them: soft photos (an upscaled or defocused source) whose LR is soft too, so the
        # model learns not to sharpen what was never sharp
        self.hr_blur, self.hr_blur_sigma = hr_blur, hr_blur_sigma
        self.weights = torch.full((len(self.images),), 1.0 / len(self.images))
        self.gen = torch.Generator().manual_seed(seed)

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.gen))

    def _crops(self, size: int, extra: int = 0) -> torch.Tensor:
        """`size` random HR crops of side hr_patch + extra (flipped, rotated), uint8."""
        p = self.hr_patch + extra
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
        out = torch.stack(patches)
        if self.hr_blur > 0:
            pick = (torch.rand(size, generator=self.gen) < self.hr_blur).nonzero().flatten().tolist()
            lo, hi = self.hr_blur_sigma
            for i in pick:
                sigma = lo + (hi - lo) * float(torch.rand(1, generator=self.gen))
                out[i] = gaussian_blur(out[i], sigma)
        return out

    def _degrade(self, hr: torch.Tensor) -> torch.Tensor:
        """The LR a decoder would hand over: antialiased bicubic, then (each by its share) 4:2:0
        chroma, an H.264 intra frame, noise; quantised to 8 bits, but for the yuv420_share, which
        stays as the video path's conversion leaves it."""
        size = hr.shape[0]
        lr = downscale(hr, self.scale)
        video = torch.zeros(size, dtype=torch.bool)
        if self.yuv420_share > 0:
            video = torch.rand(size, generator=self.gen) < self.yuv420_share
            lr[video] = yuv420_roundtrip(lr[video])
        if self.chroma_subsample > 0:
            pick = torch.rand(size, generator=self.gen) < self.chroma_subsample
            lr[pick] = subsample_chroma(lr[pick])
        if self.h264_share > 0:
            pick = torch.rand(size, generator=self.gen) < self.h264_share
            crfs = torch.randint(self.h264_crf[0], self.h264_crf[1] + 1, (size,), generator=self.gen)
            video &= ~pick  # those come back from H.264 as 8-bit RGB
            for i in pick.nonzero().flatten().tolist():
                img = (lr[i].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
                lr[i] = torch.from_numpy(h264_roundtrip(img, int(crfs[i]))).permute(2, 0, 1).float() / 255
        if self.noise_std > 0:
            lr = (lr + torch.randn(lr.shape, generator=self.gen) * self.noise_std).clamp_(0, 1)
        return torch.where(video[:, None, None, None], lr, (lr * 255).round() / 255)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(lr, hr) float tensors in [0, 1]: size x 3 x p/s x p/s and size x 3 x p x p."""
        hr = self._crops(size).float() / 255
        return self._degrade(hr), hr

    def shifted_pairs(self, pairs: int) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """(lr, hr, shifts): 2 * pairs patches, the second half the first half's scenes seen
        (dy, dx) HR pixels further on, 0..scale-1 each and not both 0, so each pair's LR differ by a
        sub-pixel phase, as consecutive frames of a pan do. Each patch is degraded on its own (a
        video's frames are compressed one by one), so what differs between the two outputs beyond
        the shift is flicker the model adds."""
        s = self.scale
        big = self._crops(pairs, extra=s - 1)
        p = self.hr_patch
        shifts = [divmod(1 + self._randint(s * s - 1), s) for _ in range(pairs)]
        first = big[:, :, :p, :p]
        second = torch.stack([b[:, dy:dy + p, dx:dx + p] for b, (dy, dx) in zip(big, shifts)])
        hr = torch.cat([first, second]).float() / 255
        return self._degrade(hr), hr, shifts


def shift_consistency(sr: torch.Tensor, shifts: list[tuple[int, int]], border: int) -> torch.Tensor:
    """Mean squared difference between each pair's outputs (`sr` from `PatchSampler.shifted_pairs`)
    after undoing the known shift, `border` HR pixels in from the patch edges (zero padding differs
    there). The ground truth scores exactly 0: the temporal metric's quantity, as a loss."""
    pairs = len(shifts)
    p = sr.shape[-1]
    diffs = []
    for a, b, (dy, dx) in zip(sr[:pairs], sr[pairs:], shifts):
        # scene point (y, x) of the first is at (y - dy, x - dx) in the second
        diffs.append((a[:, dy + border:p - border, dx + border:p - border]
                      - b[:, border:p - dy - border, border:p - dx - border]).square().mean())
    return torch.stack(diffs).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description="collect rtsr's training photos")
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    parser.add_argument("--no-wheels", action="store_true",
                        help="no photos of pinned registry wheels (no pip download)")
    parser.add_argument("--no-debs", action="store_true",
                        help="no photos of pinned Debian packages (no apt-get download)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    split = collect(args.out, wheels=not args.no_wheels, debs=not args.no_debs)
    print(f"train: {len(split['train'])} photos, held out: {', '.join(split['heldout'] + split['heldout_debs'])}"
          f" -> {args.out}")


if __name__ == "__main__":
    main()
