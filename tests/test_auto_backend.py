"""backend="auto" as a measured, cached choice (issue 16 item 4). The choice logic runs on injected
measurements and fake cache entries (deterministic); one test measures for real on a tiny model."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import rtsr
from rtsr import Upscaler
from rtsr.backends import autoselect
from rtsr.backends.autoselect import Choice, Measurement, cache_path, choose, decide, summary
from rtsr.backends.tensorrt import model_hash
from rtsr.errors import RtsrError
from rtsr.info import collect_info
from rtsr.models.weights import load_weights
from tests.backend_fixtures import cache  # noqa: F401 (fixture)
from tests.conftest import make_generator

CPU = torch.device("cpu")


class FakeMeasure:
    """Canned (seconds, PSNR-Y) per backend; records what it was asked, so a cache hit shows as nothing."""

    def __init__(self, table: dict[str, tuple[float, float]], reference: float = 30.0) -> None:
        self.table, self.reference, self.calls = table, reference, []

    def __call__(self, names: list[str], precision: str, rounds: int, failed: dict[str, str]) -> dict[str, Measurement]:
        self.calls += [(n, precision, rounds) for n in names]
        if rounds == 0:  # the fp32 torch reference: output only
            return {"torch": Measurement(float("nan"), self.reference, "fp32")}
        return {n: Measurement(*self.table[n], precision) for n in names}


@pytest.fixture()
def three(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend torch, openvino and vulkan can all run here."""
    monkeypatch.setattr(autoselect, "candidates", lambda device, precision: (["torch", "openvino", "vulkan"],
                                                                               {"tensorrt": "no CUDA"}))


def test_fastest_within_the_quality_margin_wins() -> None:
    measured = {"torch": Measurement(0.30, 30.00, "bf16"), "openvino": Measurement(0.10, 29.90, "bf16"),
                "vulkan": Measurement(0.20, 29.96, "fp16")}
    choice = decide(measured, 30.0, {"tensorrt": "no CUDA"})
    assert choice.backend == "vulkan"  # openvino is faster but lost 0.10 dB > 0.05
    assert "openvino lost 0.100 dB" in choice.why and "tensorrt not timed: no CUDA" in choice.why
    assert decide(measured, None, {}).backend == "openvino"  # no photo: quality not checked, fastest wins


def test_measured_once_then_cached(three: None, cache: Path) -> None:
    g = make_generator(seed=11)
    fake = FakeMeasure({"torch": (0.3, 30.0), "openvino": (0.1, 29.99), "vulkan": (0.2, 30.0)})
    first = choose(g, CPU, "fp32", measure=fake)
    assert first.backend == "openvino" and first.reference_psnr_y == 30.0
    assert [c[0] for c in fake.calls] == ["torch", "openvino", "vulkan"]  # at fp32 torch is its own reference
    path = cache_path(model_hash(g), CPU, "fp32")
    assert path.parent == cache / "auto" and json.loads(path.read_text())["backend"] == "openvino"
    again = choose(g, CPU, "fp32", measure=fake)
    assert again.backend == "openvino" and len(fake.calls) == 3  # read from the cache, nothing timed
    assert "openvino" in summary(g, CPU, "fp32") and "vulkan (fp32) 200.0 ms" in summary(g, CPU, "fp32")


def test_new_versions_or_machine_measure_again(three: None, monkeypatch: pytest.MonkeyPatch) -> None:
    g = make_generator(seed=12)
    fake = FakeMeasure({"torch": (0.1, 30.0), "openvino": (0.2, 30.0), "vulkan": (0.3, 30.0)})
    assert choose(g, CPU, "fp32", measure=fake).backend == "torch"
    real_versions = autoselect.versions
    monkeypatch.setattr(autoselect, "versions", lambda: {**real_versions(), "openvino": "2099.1"})
    fake.table["openvino"] = (0.05, 30.0)
    assert choose(g, CPU, "fp32", measure=fake).backend == "openvino" and len(fake.calls) == 6
    monkeypatch.setattr(autoselect, "machine", lambda: {"cpu": "another"})
    assert cache_path(model_hash(g), CPU, "fp32") != cache_path(model_hash(g), CPU, "bf16")
    choose(g, CPU, "fp32", measure=fake)
    assert len(fake.calls) == 9


def test_upscaler_follows_a_cached_choice(tiny_weights: Path) -> None:
    """A fake cache entry decides what Upscaler(backend='auto') builds."""
    generator, _ = load_weights(tiny_weights)
    path = cache_path(model_hash(generator), CPU, "fp32")
    for backend in ("openvino", "torch"):
        entry = Choice(backend, "stubbed entry", {backend: Measurement(0.1, 30.0, "fp32")}, 30.0, "2026-01-01")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(entry)))
        assert Upscaler(tiny_weights, backend="auto", device="cpu", precision="fp32").backend.name == backend


def test_one_candidate_is_chosen_without_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autoselect, "candidates", lambda device, precision: (["torch"], {"openvino": "not installed"}))
    fake = FakeMeasure({})
    choice = choose(make_generator(seed=13), CPU, "fp32", measure=fake)
    assert choice.backend == "torch" and "openvino: not installed" in choice.why and fake.calls == []


def test_the_probe_photo_is_package_data() -> None:
    """Found through the package (a wheel has no samples/), and the same pixels as the centre of
    samples/photo.png that a checkout probed before, for every scale up to x4."""
    assert Path(str(autoselect.PHOTO)) == Path(rtsr.__file__).parent / "data" / "probe.png"
    photo = cv2.cvtColor(cv2.imread(str(Path(__file__).parents[1] / "samples" / "photo.png")), cv2.COLOR_BGR2RGB)
    for scale in (2, 3, 4):
        lr, hr = autoselect.probe(scale)
        h, w = 72 * scale, 128 * scale
        y0, x0 = (photo.shape[0] - h) // 2, (photo.shape[1] - w) // 2
        assert lr.shape == (72, 128, 3) and np.array_equal(hr, photo[y0:y0 + h, x0:x0 + w])
    with pytest.raises(RtsrError, match="up to x4, not x8"):
        autoselect.probe(8)


def test_a_real_measurement_on_the_shipped_photo(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("openvino")
    g = make_generator(seed=14)
    with caplog.at_level("INFO", logger="rtsr.backends.autoselect"):
        choice = choose(g, CPU, "fp32")
    ready, _ = autoselect.candidates(CPU, "fp32")
    assert set(choice.measured) == set(ready) and {"torch", "openvino"} <= set(ready)
    assert choice.backend in ready and choice.reference_psnr_y is not None
    for m in choice.measured.values():
        assert m.seconds > 0 and m.precision == "fp32"
        assert abs(m.psnr_y - choice.reference_psnr_y) < 0.05  # fp32 everywhere: the same picture
    assert f"backend auto -> {choice.backend}" in caplog.text and "fastest on a 128x72 frame" in caplog.text
    assert "backend auto" in collect_info()


def test_a_backend_failing_its_trial_is_not_chosen(three: None) -> None:
    def measure(names: list[str], precision: str, rounds: int, failed: dict[str, str]) -> dict[str, Measurement]:
        if rounds == 0:
            return {"torch": Measurement(float("nan"), 30.0, "fp32")}
        failed["vulkan"] = "failed its trial (RtsrError: device lost)"
        return {"torch": Measurement(0.3, 30.0, precision), "openvino": Measurement(0.2, 30.0, precision)}

    choice = choose(make_generator(seed=15), CPU, "fp32", measure=measure)
    assert choice.backend == "openvino" and set(choice.measured) == {"torch", "openvino"}
    assert "vulkan not timed: failed its trial (RtsrError: device lost)" in choice.why


def test_an_unwritable_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_weights: Path,
                                    caplog: pytest.LogCaptureFixture) -> None:
    """auto still runs (measured, not cached; OpenVINO, which must write its ONNX export, fails its
    trial); asked for by name, OpenVINO says in one line what to do."""
    pytest.importorskip("openvino")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("RTSR_CACHE_DIR", str(blocker / "cache"))  # under a file: no folder can be made
    with caplog.at_level("INFO", logger="rtsr.backends.autoselect"):
        up = Upscaler(tiny_weights, backend="auto", device="cpu", precision="fp32")
    assert up.backend.name == "torch" and "openvino not timed: failed its trial" in caplog.text
    assert "cannot cache it" in caplog.text
    assert up(np.zeros((8, 8, 3), np.uint8)).shape == (32, 32, 3)
    with pytest.raises(RtsrError, match="set RTSR_CACHE_DIR to a writable folder"):
        Upscaler(tiny_weights, backend="openvino", device="cpu")(np.zeros((8, 8, 3), np.uint8))
