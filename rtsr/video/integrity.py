"""Is a media file whole? A download or copy cut short often still opens and decodes part way,
with tracks or frames missing; the container's own sizes say that it ends early.

MP4/MOV (ISO BMFF) files are a chain of boxes, each with its size; Matroska/WebM files hold one
Segment of known size (unless written live). A box or Segment that runs past the end of the file
means the file was cut.
"""
from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

EBML_MAGIC = b"\x1a\x45\xdf\xa3"
MATROSKA_SEGMENT = b"\x18\x53\x80\x67"
_ISO_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid"}


def cut_short(path: Path) -> str | None:
    """How `path` is cut short ('its moov box ends 1234 bytes past the end of the file'), or None:
    whole, or a container this does not read."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if head[:4] == EBML_MAGIC:
                return _matroska(fh, size)
            if head[4:8] in _ISO_FIRST_BOXES:
                return _iso_bmff(fh, size)
    except OSError:
        return None
    return None


def _iso_bmff(fh: BinaryIO, size: int) -> str | None:
    pos = 0
    while pos + 8 <= size:
        fh.seek(pos)
        header = fh.read(16)
        box, kind, header_size = int.from_bytes(header[:4], "big"), header[4:8], 8
        if box == 1:  # 64-bit size follows the type
            box, header_size = int.from_bytes(header[8:16], "big"), 16
        elif box == 0:  # the last box, to the end of the file
            return None
        if box < header_size or not all(32 <= c < 127 for c in kind):
            return None  # not a box chain this understands: no verdict
        if pos + box > size:
            return f"its {kind.decode()} box ends {pos + box - size} bytes past the end of the file"
        pos += box
    return None


def _vint(fh: BinaryIO) -> tuple[int, int, bool] | None:
    """An EBML variable-size integer: (value, its length in bytes, unknown: all value bits set)."""
    first = fh.read(1)
    if not first or first[0] == 0:
        return None
    length = 9 - first[0].bit_length()
    rest = fh.read(length - 1)
    if len(rest) != length - 1:
        return None
    marker = 1 << (8 - length)
    value = first[0] & (marker - 1)
    for byte in rest:
        value = value << 8 | byte
    return value, length, value == (1 << (7 * length)) - 1


def _matroska(fh: BinaryIO, size: int) -> str | None:
    fh.seek(4)
    header = _vint(fh)  # the EBML header's size
    if header is None:
        return None
    fh.seek(4 + header[1] + header[0])
    if fh.read(4) != MATROSKA_SEGMENT:
        return None
    segment = _vint(fh)
    if segment is None or segment[2]:  # unknown size: written live, no verdict
        return None
    end = fh.tell() + segment[0]
    if end > size:
        return f"its Segment ends {end - size} bytes past the end of the file"
    return None
