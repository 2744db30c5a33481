"""Where rtsr reads its shipped weights and where it writes what it builds.

Shipped weights and their cards are the package data of `rtsr.weights`, found through
importlib.resources: a checkout, an editable install, a wheel and an sdist all read them from
where rtsr is installed. setup.py maps that package onto the repo's top-level `engines/`, the
folder `train.py --ship` writes to, so the files exist once. rtsr never writes there.

What rtsr builds at run time (TensorRT plans, their timing caches) goes to the user's cache
folder: $RTSR_CACHE_DIR, else $XDG_CACHE_HOME/rtsr, else ~/.cache/rtsr. It is created when
something is first written, and every file is written under a unique temporary name and renamed
into place, so two processes building the same thing at once never see half a file. The
folders of compiled models, `openvino/` and `tensorrt/`, are kept under a size bound, least
recently used out first (`trim_cache`): OpenVINO compiles one file per input shape, so a folder
of photos of many sizes would otherwise fill the disk.

Standard library only (no torch), so packaging checks can import it on any Python.
"""
from __future__ import annotations

import logging
import os
import stat
import tempfile
import time
from importlib import resources
from pathlib import Path

from rtsr.errors import RtsrError

log = logging.getLogger(__name__)
WEIGHTS_PACKAGE = "rtsr.weights"


def weights_dir() -> Path:
    """The folder of the shipped weights (*.pt) and cards (*.yaml)."""
    try:
        root = resources.files(WEIGHTS_PACKAGE)
    except ModuleNotFoundError:
        raise RtsrError(f"{WEIGHTS_PACKAGE} is missing: install rtsr (pip install -e . in a checkout)") from None
    if not isinstance(root, Path):  # e.g. imported from a zip: torch.load needs real files
        raise RtsrError(f"shipped weights must be installed as files, found {root!r}")
    return root


def cache_dir_and_reason() -> tuple[Path, str]:
    """The user cache folder and which rule chose it."""
    if os.environ.get("RTSR_CACHE_DIR"):
        return Path(os.environ["RTSR_CACHE_DIR"]).expanduser(), "RTSR_CACHE_DIR"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec: a relative path is invalid and is ignored
        return Path(xdg) / "rtsr", "XDG_CACHE_HOME"
    return Path.home() / ".cache" / "rtsr", "default"


def cache_dir() -> Path:
    return cache_dir_and_reason()[0]


def tensorrt_cache_dir() -> Path:
    """Built TensorRT plans (*.plan) and TensorRT timing caches."""
    return cache_dir() / "tensorrt"


def mark_used(path: Path) -> None:
    """A cache hit: `path` becomes the most recently used (its mtime), the last `trim_cache` takes.
    Called before the file is read: `trim_cache` spares what was used in the last GRACE_S."""
    try:
        os.utime(path)
    except OSError:  # a read-only shared cache, or another user's file: it is used all the same
        pass


GRACE_S = 600  # files used this recently are never trimmed: another process may be about to read one


def trim_cache(folder: Path, max_bytes: int, keep: Path, patterns: tuple[str, ...]) -> list[Path]:
    """Remove rtsr's files (`patterns`) of `folder`, least recently used (mtime) first, until the
    folder's files of those patterns hold at most `max_bytes`. Never `keep` (the file just
    written), a file used in the last GRACE_S, a symlink, nor another writer's temporary file
    (hidden names). A cache that cannot be trimmed stays as it is: it is logged, never raised."""
    removed: list[Path] = []
    try:
        entries = []
        for path in {p for pattern in patterns for p in folder.glob(pattern)}:
            try:
                st = path.lstat()
            except OSError:  # removed by another process meanwhile
                continue
            if stat.S_ISREG(st.st_mode) and not path.name.startswith("."):
                entries.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in entries)
        recent = time.time() - GRACE_S
        for mtime, size, path in sorted(entries, key=lambda e: e[0]):
            if total <= max_bytes:
                break
            if path == keep or mtime > recent:
                continue
            try:
                path.unlink()
            except FileNotFoundError:  # another process trimmed it first
                pass
            total -= size
            removed.append(path)
    except OSError as exc:  # e.g. a shared cache whose files are not ours to remove
        log.debug("cannot trim the cache folder %s (%s)", folder, exc)
    for path in removed:
        log.info("cache: removed %s (least recently used, over the folder's bound)", path.name)
    return removed


def write_cache_file(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically: a unique temporary file beside it, then a rename. Two
    writers of the same path never collide; the last rename wins and readers only ever see a
    whole file. Parent folders are created on demand. The file is readable by others (0644), so
    a cache folder shared by several users or workers works."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
