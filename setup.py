"""rtsr: real-time video super-resolution (SRGAN generator, PyTorch/TensorRT, PyAV pipeline)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

version = re.search(r'__version__ = "([^"]+)"', Path("rtsr/__init__.py").read_text())[1]

setup(
    name="rtsr",
    version=version,
    description="Real-time video super-resolution with a trained SRGAN generator",
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["rtsr", "rtsr.*"]),
    package_data={"rtsr": ["configs/*.yaml", "configs/models/*.yaml"]},
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "av>=12",
        "opencv-python>=4.8",
        "pyyaml>=6",
        "tqdm>=4.60",  # progress bars with rate and ETA that turn themselves off when not a TTY
    ],
    extras_require={
        "tensorrt": ["tensorrt>=10.0", "onnx>=1.15"],
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17"],
        "train": ["scikit-image>=0.21", "scikit-learn>=1.3", "matplotlib>=3.7"],
        "test": ["pytest>=7", "onnx>=1.15", "onnxruntime>=1.17", "scikit-image>=0.21",
                 "scikit-learn>=1.3", "matplotlib>=3.7"],
    },
    entry_points={"console_scripts": ["rtsr=rtsr.cli:main"]},
)
