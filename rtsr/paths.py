"""Output paths: the default name, the refusals that protect a user's files, atomic writes.

An output is written to a hidden `.NAME.XXXXXXXX.part.EXT` beside the target and renamed on
success. The temporary file gets the mode a plain write would give it (0666 & ~umask; an
overwritten target keeps its own mode), and it is held under an `flock` while it is written: a
run killed outright (SIGKILL, power loss) leaves it behind unlocked, and the next run writing the
same target removes it, while the temporary file of a run still going stays locked and is left
alone. The rename does not replace a target that appeared while the run was writing, unless the
target was already there when the run began (that is, the user passed --overwrite).
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import stat
import string
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rtsr.errors import RtsrError

try:
    import fcntl
except ImportError:  # not POSIX: no locks, so no stale-file cleanup either
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
_TEMP_CHARS = string.ascii_lowercase + string.digits + "_"
_TEMP_RANDOM = 8
# errors of the place written to, not of rtsr: one line for the user, never a traceback
WRITE_ERRNOS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file too large",
                errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                errno.EPERM: "operation not permitted", errno.EIO: "input/output error"}


def default_output(input_path: Path, scale: int, suffix: str | None = None) -> Path:
    """NAME_x4.EXT beside the input."""
    return input_path.with_name(f"{input_path.stem}_x{scale}{suffix or input_path.suffix}")


def check_output(input_path: Path, output_path: Path, overwrite: bool) -> None:
    """Refuse to write over the input, or over an existing file without --overwrite."""
    if output_path.resolve() == input_path.resolve() or (
            output_path.exists() and os.path.samefile(output_path, input_path)):
        raise RtsrError(f"output {output_path} is the input file; choose another -o")
    if output_path.exists() and not overwrite:
        raise RtsrError(f"output {output_path} exists; pass --overwrite to replace it")
    if output_path.exists() and output_path.is_dir():
        raise RtsrError(f"output {output_path} is a directory")
    check_destination(output_path)


def check_destination(output_path: Path) -> None:
    """What can be known of an output before its name is final (before the model loads): it has
    a suffix to tell its format, and its folder takes new files."""
    if not output_path.suffix:
        raise RtsrError(f"output {output_path} has no suffix to tell its format (e.g. .mp4, .mkv, .png)")
    folder = output_path.parent
    if not folder.is_dir():
        raise RtsrError(f"output folder {folder} does not exist")
    try:  # a real attempt: permissions, read-only mounts and ACLs all answer it
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise RtsrError(f"cannot write in {folder}: {exc.strerror or exc}") from None


def _temp_name(target: Path, random_part: str) -> str:
    return f".{target.stem}.{random_part}.part{target.suffix}"


def _stale_temp_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(re.escape(f".{target.stem}.") + f"[{re.escape(_TEMP_CHARS)}]{{{_TEMP_RANDOM}}}"
                      + re.escape(f".part{target.suffix}"))


def _same_file(path: Path, fd: int) -> bool:
    try:
        here, held = path.stat(follow_symlinks=False), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)


def remove_stale_temps(target: Path) -> list[Path]:
    """Delete the temporary files of killed runs on `target`: those no live run holds locked."""
    if fcntl is None:
        return []
    pattern = _stale_temp_pattern(target)
    removed = []
    try:
        names = [e.name for e in os.scandir(target.parent) if pattern.fullmatch(e.name)]
    except OSError:
        return []
    for name in names:
        path = target.parent / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _same_file(path, fd):
                path.unlink()
                removed.append(path)
        except OSError:  # locked: a run is writing it
            pass
        finally:
            os.close(fd)
    for path in removed:
        log.warning("removed %s, left by an interrupted run", path)
    return removed


def _create_locked_temp(target: Path) -> tuple[Path, int]:
    """A new empty temp file beside `target`, mode 0666 & ~umask, locked; (path, fd)."""
    for _ in range(100):
        path = target.with_name(_temp_name(target, "".join(secrets.choice(_TEMP_CHARS) for _ in range(_TEMP_RANDOM))))
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        if fcntl is None:
            return path, fd
        # a cleaner of another run may have taken it for stale in the instant before the lock:
        # then the name no longer leads to this file, and a new one is made
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _same_file(path, fd):
            return path, fd
        os.close(fd)
    raise RtsrError(f"cannot create a temporary file beside {target}")


def _link_no_replace(tmp: Path, target: Path) -> None:
    """Give `tmp` the name `target` unless `target` exists (FileExistsError), atomically where the
    file system has hard links."""
    try:
        os.link(tmp, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(target):  # no hard links here (FAT, some network shares): checked, then renamed
            raise FileExistsError(errno.EEXIST, "File exists", str(target)) from None
        os.rename(tmp, target)
        return
    tmp.unlink()


def write_error(target: Path, exc: OSError) -> RtsrError | None:
    """The one-line error for an OSError of the place written to, else None (a bug: traceback)."""
    reason = WRITE_ERRNOS.get(exc.errno or 0)
    return RtsrError(f"cannot write {target}: {reason}") if reason else None


@contextlib.contextmanager
def atomic_output(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target` (same suffix); rename it on success, delete it on
    any error, Ctrl-C or SIGTERM, so a half-written file never carries the target's name.

    A target that exists now is replaced (keeping its mode); one that does not is created only if
    nothing took the name meanwhile, else RtsrError.
    """
    remove_stale_temps(target)
    try:
        existing = target.stat()
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise write_error(target, exc) or exc from None
    try:
        tmp, fd = _create_locked_temp(target)
    except OSError as exc:
        raise write_error(target, exc) or exc from None
    try:
        yield tmp
        if existing is not None:
            os.chmod(tmp, stat.S_IMODE(existing.st_mode))
            tmp.replace(target)
        else:
            try:
                _link_no_replace(tmp, target)
            except FileExistsError:
                raise RtsrError(f"output {target} appeared while this run was writing it (another run?); "
                                "pass --overwrite to replace it") from None
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and (error := write_error(target, exc)) is not None:
            raise error from None
        raise
    finally:
        os.close(fd)
