"""Tile and batch fitted to a GPU's free memory (issue 19): arithmetic and the fit, with the CUDA
memory query stood in for (no GPU here); what the CLI's build-engine builds follows the same fit."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rtsr.memory import MEMORY_SHARE, MIN_TILE, activation_bytes, fit_tile_and_batch, fit_to_device
from rtsr.models.config import load_generator_config
from rtsr.tiling import receptive_radius

GIB = 2**30
X4 = load_generator_config("srgan-x4")  # 16 blocks x 64 channels


def test_one_output_sized_activation_of_the_old_default_is_16_5_gib() -> None:
    """8 tiles of 1040 x 1040 at x4, 64 channels, fp16: the issue's figure for one tensor."""
    assert activation_bytes(X4, 8, 1040, 2) / 2 / GIB == pytest.approx(16.5, abs=0.05)
    assert activation_bytes(X4, 4, 1040, 2) * 2 == activation_bytes(X4, 8, 1040, 2)
    assert activation_bytes(X4, 1, 1040, 4) == 2 * activation_bytes(X4, 1, 1040, 2)


@pytest.mark.parametrize("free_gib, expected", [
    (139, (960, 8)),   # H200: the defaults fit
    (80, (960, 4)),    # H100 80 GB: 33 GiB for batch 8 is over 40% of it
    (24, (960, 2)),
    (8, (480, 1)),     # batch 1 of 1040 needs 4.1 GiB: the tile halves
    (0.05, (MIN_TILE, 1)),
])
def test_batch_halves_first_then_the_tile(free_gib: float, expected: tuple[int, int]) -> None:
    overlap = receptive_radius(X4)
    budget = int(free_gib * GIB * MEMORY_SHARE)
    tile, batch = fit_tile_and_batch(X4, budget, 960, 8, overlap, 2)
    assert (tile, batch) == expected
    if expected != (MIN_TILE, 1):
        assert activation_bytes(X4, batch, tile + 2 * overlap, 2) <= budget
    if batch < 8:  # and it is the largest: one step bigger did not fit
        bigger = (960, batch * 2) if tile == 960 else (tile * 2, batch)
        assert activation_bytes(X4, bigger[1], bigger[0] + 2 * overlap, 2) > budget


def test_what_the_caller_set_is_kept() -> None:
    overlap, budget = receptive_radius(X4), 3 * GIB
    assert fit_tile_and_batch(X4, budget, 960, 8, overlap, 2, fixed_batch=True)[1] == 8
    assert fit_tile_and_batch(X4, budget, 960, 8, overlap, 2, fixed_tile=True)[0] == 960
    assert fit_tile_and_batch(X4, budget, 960, 8, overlap, 2, fixed_tile=True, fixed_batch=True) == (960, 8)


def _free(monkeypatch: pytest.MonkeyPatch, gib: float, free_gib: float | None = None) -> None:
    """A GPU of `gib` GiB, `free_gib` of them free (all by default)."""
    free = gib if free_gib is None else free_gib
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(free * GIB), int(gib * GIB)))


def test_fit_to_device_asks_the_gpu_and_warns_when_fixed_values_do_not_fit(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    overlap = receptive_radius(X4)
    _free(monkeypatch, 24)
    assert fit_to_device(X4, torch.device("cuda"), 960, 8, overlap, 2) == (960, 2)
    assert fit_to_device(X4, torch.device("cuda"), 960, 8, overlap, 4) == (960, 1)   # fp32: twice the bytes
    assert fit_to_device(X4, torch.device("cpu"), 960, 8, overlap, 2) == (960, 8)    # not a GPU: unchanged
    with caplog.at_level("WARNING", logger="rtsr.memory"):
        assert fit_to_device(X4, torch.device("cuda"), 960, 8, overlap, 2, True, True) == (960, 8)
    assert "may run out of memory" in caplog.text


def test_the_fit_follows_the_gpus_size_not_what_is_free_now(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """build-engine and a later upscale must agree on the profile whatever else runs on the GPU:
    less free memory warns, it does not change the fit."""
    overlap = receptive_radius(X4)
    _free(monkeypatch, 80)
    caplog.clear()
    with caplog.at_level("WARNING", logger="rtsr.memory"):
        assert fit_to_device(X4, torch.device("cuda"), 960, 8, overlap, 2) == (960, 4)
    assert "may run out of memory" not in caplog.text
    _free(monkeypatch, 80, free_gib=20)
    with caplog.at_level("WARNING", logger="rtsr.memory"):
        assert fit_to_device(X4, torch.device("cuda"), 960, 8, overlap, 2) == (960, 4)
    assert "may run out of memory" in caplog.text


def test_build_engine_defaults_follow_the_gpus_memory(monkeypatch: pytest.MonkeyPatch, tiny_weights: Path) -> None:
    """On a small GPU `rtsr build-engine` builds batch 2 (as Upscaler's defaults become there)."""
    import rtsr.backends.tensorrt as tensorrt
    import rtsr.devices
    from rtsr import cli
    from rtsr.models.weights import load_weights

    generator, _ = load_weights(tiny_weights)
    overlap = receptive_radius(generator.config)
    # the tiny model's activations: pick a free size at which its batch 8 does not fit but 2 does
    need8 = activation_bytes(generator.config, 8, 960 + 2 * overlap, 2)
    _free(monkeypatch, need8 / 3.5 / MEMORY_SHARE / GIB)
    built = []
    monkeypatch.setattr(rtsr.devices, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(tensorrt, "unavailable_reason", lambda device: None)
    monkeypatch.setattr(tensorrt, "build_engine", lambda g, d, profile, *a, **k: built.append(profile) or Path("x"))
    assert cli.main(["build-engine", "--model", str(tiny_weights)]) == 0
    assert built == [tensorrt.ShapeProfile.for_inputs(2, 960 + 2 * overlap)]
