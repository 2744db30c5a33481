"""rtsr: real-time video super-resolution with a trained SRGAN generator."""
from rtsr.errors import RtsrError
from rtsr.upscaler import Upscaler

__version__ = "0.1.0"
__all__ = ["RtsrError", "Upscaler", "__version__"]
