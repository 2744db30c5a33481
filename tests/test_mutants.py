"""A fixed set of mutants that gates CI: each one-line bug below must make its tests fail.

Issue 19's review found one-line mutations of rtsr that the whole suite let through. Each is
listed here as (file, old text, new text) with the tests that must catch it. The test copies the
package into a temporary folder (the working tree is never touched), applies one mutation there,
runs only that mutant's tests in a child process with the copy first on sys.path, and asserts that
they fail; a control run of all the targeted tests on the unmutated copy must pass, so a failure
is the mutation's doing. The full mutation run (mutmut, every mutant of rtsr/video/,
rtsr/tiling.py, rtsr/backends/, train/train.py) is too slow for CI: see mutation/README.md.

Not here, because no CPU test can kill it: removing `compute_stream.wait_event(uploaded)` from the
CUDA device stage (rtsr/video/pipeline.py) races the upload against the model only on a GPU.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rtsr.devices import native_bf16

ROOT = Path(__file__).resolve().parents[1]
B = "tests/test_behaviour.py::"
AUDIO = B + "test_copied_audio_is_the_inputs_within_the_range_shifted_by_start"
SWSCALE = B + "test_rgb_the_model_sees_matches_swscale"
PIPELINE_COLOUR = B + "test_pipeline_feeds_the_model_the_streams_colour"
UPSAMPLE = B + "test_chroma_upsampling_of_an_impulse_is_left_sited_linear"
DOWNSAMPLE = B + "test_chroma_downsampling_of_an_impulse_is_left_sited_121"
ENCODER = B + "test_yuv_the_encoder_gets_matches_swscale"

# name: (file, old, new, tests that must fail)
MUTANTS: dict[str, tuple[str, str, str, list[str]]] = {
    "copied packets not shifted by --start": (
        "rtsr/video/writer.py", "shift = self._ticks(packet.time_base)", "shift = 0", [AUDIO]),
    "subtitle on screen at --start not trimmed": (
        "rtsr/video/writer.py", "packet.duration -= shift - packet.pts", "packet.duration -= 0",
        [B + "test_copied_subtitles_are_kept_trimmed_and_shifted_by_start"]),
    "copied packets not filtered by --start/--end": (
        "rtsr/video/reader.py", "if self._in_range(seconds, until) != 0:", "if False:", [AUDIO]),
    "copied packets not filtered by --end": (
        "rtsr/video/reader.py", "if self._in_range(seconds, until) != 0:", "if self._in_range(seconds, until) < 0:",
        [AUDIO]),
    "BT.709 streams converted as BT.601": (
        "rtsr/video/color.py", '_MATRIX_OF_SPACE = {SPACE_BT709: "bt709"', '_MATRIX_OF_SPACE = {SPACE_BT709: "bt601"',
        [SWSCALE, PIPELINE_COLOUR]),
    "untagged HD read as BT.601": (
        "rtsr/video/color.py", '"bt709" if height >= 720 else "bt601"', '"bt709" if height > 720 else "bt601"',
        [B + "test_untagged_streams_are_read_as_players_read_them"]),
    "BT.2020 coefficients replaced by BT.709's": (
        "rtsr/video/color.py", '"bt2020": (0.2627, 0.0593)', '"bt2020": (0.2126, 0.0722)', [SWSCALE]),
    "full-range tag ignored": (
        "rtsr/video/color.py", "return cls(matrix, color_range == RANGE_FULL,", "return cls(matrix, False,",
        [SWSCALE, PIPELINE_COLOUR]),
    "limited-range chroma scaled like luma": (
        "rtsr/video/color.py", "return 16.0 * m, 219.0 * m, 128.0 * m, 224.0 * m",
        "return 16.0 * m, 219.0 * m, 128.0 * m, 219.0 * m", [SWSCALE]),
    "chroma upsampled nearest-neighbour horizontally": (
        "rtsr/video/color.py", "c = torch.stack((c, (c + right) / 2), -1).flatten(-2)",
        "c = torch.stack((c, c), -1).flatten(-2)", [UPSAMPLE]),
    "chroma upsampled nearest-neighbour vertically": (
        "rtsr/video/color.py", "return torch.stack((0.75 * c + 0.25 * up, 0.75 * c + 0.25 * down), -2)",
        "return torch.stack((c, c), -2)", [UPSAMPLE]),
    "chroma downsampled by a plain 2-tap mean": (
        "rtsr/video/color.py", "return (left + 2 * c[..., 0::2] + c[..., 1::2]) / 4",
        "return (c[..., 0::2] + c[..., 1::2]) / 2", [DOWNSAMPLE]),
    "RGB -> YUV reads green for red": (
        "rtsr/video/color.py", "r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]", "r, g, b = rgb[:, 1], rgb[:, 1], rgb[:, 2]",
        [ENCODER]),
    "RGB -> YUV Cr scaled by 3 (1 - Kr)": (
        "rtsr/video/color.py", "(r - yf) / (2 * (1 - kr))), 1)", "(r - yf) / (3 * (1 - kr))), 1)", [ENCODER]),
    "overshooting model output wraps around": (
        "rtsr/video/color.py", "t.round_().clamp_(0, top).to(out)", "t.round_().clamp_(0).to(out)",
        [B + "test_overshooting_model_output_is_clamped_not_wrapped"]),
    "learning-rate schedule inverted": (
        "train/train.py", "(1 + torch.cos(torch.tensor(t * torch.pi)).item())",
        "(1 - torch.cos(torch.tensor(t * torch.pi)).item())", [B + "test_lr_schedule_is_a_cosine_from_lr_down_to_lr_final"]),
    "GAN stage's generator optimiser step removed": (
        "train/train.py", "loss_g.backward()\n        self.opt_g.step()", "loss_g.backward()",
        [B + "test_one_gan_step_moves_both_networks"]),
}
OV = "tests/test_backend_openvino.py::"
OV_BF16 = OV + "test_bf16_keeps_the_output_within_a_fraction_of_a_code_value"
if native_bf16()[0]:  # the OpenVINO bf16 tests skip on other CPUs (OpenVINO runs f32 there)
    MUTANTS.update({
        "OpenVINO bf16 runs the whole model in bf16": (
            "rtsr/backends/openvino_backend.py",
            'self._fp32_skip = self._hint == "bf16" and generator.config.skip == "bicubic"', "self._fp32_skip = False",
            [OV_BF16]),
        "OpenVINO bf16 skip added without the clamp": (
            "rtsr/backends/openvino_backend.py", 'align_corners=False)).clamp_(0, 1)', "align_corners=False))",
            [OV_BF16]),
        "the residual blob keyed like a skip-free twin's": (
            "rtsr/backends/openvino_backend.py", "{'_residual' if self._fp32_skip else ''}", "",
            [OV + "test_the_residual_part_is_cached_apart_from_a_skip_free_twin"]),
    })


def _copy_tree(dest: Path) -> None:
    """The package, the training code and the tests the mutants need (not train/data or runs)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "rtsr", dest / "rtsr", ignore=ignore)
    (dest / "train").mkdir()
    for path in (ROOT / "train").glob("*.py"):
        shutil.copy2(path, dest / "train" / path.name)
    shutil.copytree(ROOT / "train" / "configs", dest / "train" / "configs")
    (dest / "tests").mkdir()
    for name in ("__init__.py", "conftest.py", "test_behaviour.py", "backend_fixtures.py", "test_backend_openvino.py"):
        shutil.copy2(ROOT / "tests" / name, dest / "tests" / name)
    shutil.copy2(ROOT / "pytest.ini", dest / "pytest.ini")


# One process imports the heavy libraries once and forks a child per run: each child imports rtsr
# and train from its copy (the parent never imports them) and runs pytest there, output to a file.
# Two children at a time; a subprocess per run would spend most of its time importing torch.
RUNNER = r"""
import json, os, sys
import av, cv2, numpy, pytest, torch, yaml  # noqa: F401  (imported before the fork, once)
jobs, running, codes = json.loads(sys.argv[1]), {}, {}
def reap():
    pid, status = os.wait()
    codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
for i, (copy, tests) in enumerate(jobs):
    if len(running) == 2:
        reap()
    pid = os.fork()
    if pid == 0:
        out = os.open(os.path.join(copy, "pytest.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1), os.dup2(out, 2)
        os.chdir(copy)
        sys.path.insert(0, copy)
        os._exit(int(pytest.main(["-q", "-x", "-p", "no:cacheprovider", *tests])))
    running[pid] = i
while running:
    reap()
print(json.dumps([codes[i] for i in range(len(jobs))]))
"""


def _run_all(jobs: list[tuple[Path, list[str]]]) -> list[int]:
    """pytest's exit code for each (copy, tests), run in that copy."""
    # a cache folder of their own: a mutant's compiled models must not reach the user's
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "RTSR_CACHE_DIR": str(jobs[0][0].parent / "cache")}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps([(str(c), t) for c, t in jobs])],
                          cwd=jobs[0][0], env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mutated_copy(base: Path, name: str) -> Path:
    file, old, new, _ = MUTANTS[name]
    copy = base / f"m{list(MUTANTS).index(name)}"
    _copy_tree(copy)
    source = (copy / file).read_text()
    assert source.count(old) == 1, f"{name}: {old!r} is not in {file} exactly once (the code moved: update MUTANTS)"
    (copy / file).write_text(source.replace(old, new))
    return copy


def test_every_mutant_still_names_code_that_exists() -> None:
    """Fast: each mutation's text is in its file once (else the code moved and MUTANTS needs updating)."""
    for name, (file, old, _, tests) in MUTANTS.items():
        assert (ROOT / file).read_text().count(old) == 1, f"{name}: {old!r} is not in {file} exactly once"
        assert all((ROOT / t.split("::")[0]).is_file() for t in tests), name


@pytest.mark.slow
def test_mutants_are_killed(tmp_path: Path) -> None:
    for module in ("skimage", "sklearn", "matplotlib"):  # the training tests' imports, as in tests/test_train.py
        pytest.importorskip(module)
    control = tmp_path / "control"
    _copy_tree(control)
    targeted = sorted({t for *_, tests in MUTANTS.values() for t in tests})
    jobs = [(control, targeted)] + [(_mutated_copy(tmp_path, name), MUTANTS[name][3]) for name in MUTANTS]
    codes = _run_all(jobs)
    log = lambda copy: (copy / "pytest.log").read_text()[-3000:]  # noqa: E731
    assert codes[0] == 0, f"the targeted tests fail without a mutation:\n{log(control)}"
    results = dict(zip(MUTANTS, zip(codes[1:], (copy for copy, _ in jobs[1:]))))
    survived = [name for name, (code, _) in results.items() if code == 0]
    broken = [f"{name}: pytest exit {code}\n{log(copy)}" for name, (code, copy) in results.items() if code not in (0, 1)]
    assert not survived, f"mutants not killed: {survived}"
    assert not broken, "mutants that broke the test run instead of failing a test:\n" + "\n".join(broken)
