"""Output paths: the default name, the refusals that protect a user's files, atomic writes."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rtsr.errors import RtsrError


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
    if not output_path.parent.is_dir():
        raise RtsrError(f"output folder {output_path.parent} does not exist")


@contextlib.contextmanager
def atomic_output(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target` (same suffix); rename it on success, delete it on
    any error or Ctrl-C, so a half-written file never carries the target's name."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".part{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
