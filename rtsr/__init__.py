"""rtsr: real-time video super-resolution with a trained SRGAN generator."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rtsr.errors import RtsrError

__version__ = "0.1.0"  # the one place: setup.py reads it from here
__all__ = ["RtsrError", "Upscaler", "__version__"]

if TYPE_CHECKING:
    from rtsr.upscaler import Upscaler


def __getattr__(name: str) -> Any:
    """`rtsr.Upscaler` is imported on first use, so `import rtsr` (and `rtsr --help`, and a
    packaging check) does not load torch."""
    if name == "Upscaler":
        from rtsr.upscaler import Upscaler

        return Upscaler
    raise AttributeError(f"module 'rtsr' has no attribute {name!r}")
