"""rtsr: real-time video super-resolution (SRGAN generator, PyTorch/TensorRT, PyAV pipeline).

pyproject.toml declares the build system (setuptools); the metadata lives here. The shipped
weights are the package `rtsr.weights`, mapped onto the top-level engines/ (where train.py
--ship writes), so wheels and sdists carry them without a second copy in the repo.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
version = re.search(r'__version__ = "([^"]+)"', (HERE / "rtsr" / "__init__.py").read_text())[1]

setup(
    name="rtsr",
    version=version,
    description="Real-time video super-resolution with a trained SRGAN generator",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",  # CI: runs on 3.11, installs and compiles on 3.10, 3.12, 3.13
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
    ],
    packages=find_packages(include=["rtsr", "rtsr.*"]) + ["rtsr.weights"],
    package_dir={"rtsr.weights": "engines"},
    # hosts/gst/python: the stub GStreamer's Python plugin loader finds through GST_PLUGIN_PATH;
    # data/probe.png: the photo backend="auto" times and scores the backends on
    package_data={"rtsr": ["configs/*.yaml", "configs/models/*.yaml", "hosts/gst/python/*.py", "data/*.png"],
                  "rtsr.weights": ["*.pt", "*.yaml"]},
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
        "openvino": ["openvino>=2024.0", "onnx>=1.15"],  # onnx: torch's ONNX export, which OpenVINO reads
        # ncnn: PyPI's wheels are built with Vulkan; pnnx: ncnn's converter (ONNX -> ncnn param/bin)
        "vulkan": ["ncnn>=1.0.20240410", "pnnx>=20240410", "onnx>=1.15"],
        # the VapourSynth filter (rtsr.hosts.vapoursynth): its core and vspipe come in the wheel,
        # R74+ (Python >= 3.12); bestsource is the source filter the scripts use
        "vs": ["vapoursynth>=74", "vapoursynth-bestsource>=11"],
        "train": ["scikit-image>=0.21", "scikit-learn>=1.3", "matplotlib>=3.7"],
        # segmented runs on a Ray cluster (rtsr upscale --ray): actors per GPU, restarts, retries
        "ray": ["ray>=2.60"],
        # build: tests/test_install.py builds the wheel and the sdist the way users do
        "test": ["pytest>=7", "build>=1", "onnx>=1.15", "onnxruntime>=1.17", "scikit-image>=0.21",
                 "scikit-learn>=1.3", "matplotlib>=3.7", "openvino>=2024.0", "ncnn>=1.0.20240410",
                 "pnnx>=20240410", "ray>=2.60"],
    },
    entry_points={"console_scripts": ["rtsr=rtsr.cli:main"]},
)
