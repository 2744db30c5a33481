"""Fixtures the backend tests share (OpenVINO, Vulkan, auto): a cache folder per test module, so
what a backend builds once (the ONNX export, compiled or converted models) is built once there,
and the real held-out photo."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory: pytest.TempPathFactory):
    """RTSR_CACHE_DIR -> a fresh folder for the whole module."""
    with pytest.MonkeyPatch.context() as mp:
        folder = tmp_path_factory.mktemp("rtsr-cache")
        mp.setenv("RTSR_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    """scikit-image's chelsea (held out from training) as RGB uint8."""
    cv2 = pytest.importorskip("cv2")
    skimage = pytest.importorskip("skimage")
    return cv2.cvtColor(cv2.imread(str(Path(skimage.__file__).parent / "data" / "chelsea.png")), cv2.COLOR_BGR2RGB)
