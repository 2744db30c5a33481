"""rtsr as users get it: the wheel and the sdist, built the way pip and `python -m build` build
them; the wheel installed (not editable) into fresh virtual environments outside the checkout and
run from another folder, the sdist built to a wheel that must be the same, byte for byte. The default model must be found inside the installed package, the output must be
right, and nothing may be written into site-packages.

Slow (three isolated builds, four venvs, a short upscale: about a minute or two on two cores), so
it runs where CI=true (.ci/run) or RTSR_INSTALL_TEST=1:
    RTSR_INSTALL_TEST=1 python -m pytest -q tests/test_install.py
The venvs that run rtsr see this interpreter's site-packages (--system-site-packages) for torch
and the other dependencies, so nothing is downloaded twice; their own rtsr comes first on the
path, and the test checks that it is the installed one that ran.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("srgan-x4", "srgan-x4-clean", "srgan-x4-lite", "srgan-x4-steady")
FRAMES = 12  # of samples/sample.mp4's 48: enough to check the output, cheap on a CPU

pytestmark = pytest.mark.skipif(not (os.environ.get("CI") or os.environ.get("RTSR_INSTALL_TEST")),
                                reason="slow packaging test: runs in CI, or set RTSR_INSTALL_TEST=1")


def run(cmd: list, cwd: Path | None = None, env: dict | None = None, timeout: int = 600) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def source_copy(dest: Path) -> Path:
    """The files git tracks or would track (no build outputs, no caches), as a clean source tree."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know the source files")
    listed = run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT).split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and two wheels, each built in its own isolated environment from pyproject.toml's
    build system: one straight from the tree, as `pip install .` or `pip install git+...` do, and
    one from the unpacked sdist, as `pip install rtsr-*.tar.gz` does."""
    pytest.importorskip("build", reason="python -m build is needed (pip install -e '.[test]')")
    src = source_copy(tmp_path_factory.mktemp("src"))
    out, from_sdist = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("dist-from-sdist")
    run([sys.executable, "-m", "build", "--sdist", "--outdir", out, src])
    run([sys.executable, "-m", "build", "--wheel", "--outdir", out, src])
    (wheel,), (sdist,) = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    unpacked = tmp_path_factory.mktemp("sdist")
    with tarfile.open(sdist) as tf:
        tf.extractall(unpacked, filter="data")
    (tree,) = unpacked.iterdir()
    run([sys.executable, "-m", "build", "--wheel", "--outdir", from_sdist, tree])
    (wheel_from_sdist,) = from_sdist.glob("*.whl")
    return {"wheel": wheel, "sdist": sdist, "wheel_from_sdist": wheel_from_sdist}


def test_wheel_is_pure_python_and_carries_the_weights(dists: dict[str, Path]) -> None:
    wheel = dists["wheel"]
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = next(n for n in names if n.endswith(".dist-info/WHEEL"))
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        assert "Root-Is-Purelib: true" in zf.read(info).decode()
        assert "Requires-Python: >=3.10" in zf.read(meta).decode()
    for model in MODELS:
        assert {f"rtsr/weights/{model}.pt", f"rtsr/weights/{model}.yaml"} <= names
    assert {"rtsr/weights/__init__.py", "rtsr/configs/runtime.yaml", "rtsr/locations.py", "rtsr/data/probe.png"} <= names
    assert not [n for n in names if n.split("/")[0] in ("engines", "tests", "train", "benchmarks", "samples")]


def test_sdist_carries_the_weights_and_the_build_files(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {"pyproject.toml", "setup.py", "README.md", "engines/__init__.py", "rtsr/configs/runtime.yaml"} <= names
    assert {f"engines/{m}{s}" for m in MODELS for s in (".pt", ".yaml")} <= names


def wheel_files(wheel: Path) -> dict[str, bytes]:
    """Every file of a wheel but its RECORD (which lists the others' hashes)."""
    with zipfile.ZipFile(wheel) as zf:
        return {n: zf.read(n) for n in zf.namelist() if not n.endswith(".dist-info/RECORD")}


def test_wheel_built_from_the_sdist_is_the_tree_wheel(dists: dict[str, Path]) -> None:
    """What pip builds from the sdist is, file for file and byte for byte, the wheel built from the
    tree, which test_installed_package_upscales_from_another_folder installs and runs: an sdist
    that lost a file (weights, a config, a module) shows here, without a second install and run."""
    tree, sdist = wheel_files(dists["wheel"]), wheel_files(dists["wheel_from_sdist"])
    assert sorted(sdist) == sorted(tree), set(sdist) ^ set(tree)
    assert [n for n in tree if tree[n] != sdist[n]] == []


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() or p.is_dir()}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def test_installed_package_upscales_from_another_folder(dists: dict[str, Path], tmp_path: Path) -> None:
    import av

    from rtsr import Upscaler

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", venv])
    py = venv / "bin" / "python"
    run([py, "-m", "pip", "install", "-q", dists["wheel"]], cwd=tmp_path)
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    assert (site / "rtsr" / "weights" / "srgan-x4.pt").is_file()
    before = snapshot(site)

    work = tmp_path / "elsewhere"  # not the checkout, not site-packages
    work.mkdir()
    shutil.copy(ROOT / "samples" / "sample.mp4", work / "clip.mp4")
    env = dict(os.environ, RTSR_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("PYTHONPATH", None)
    rtsr = venv / "bin" / "rtsr"
    models = run([rtsr, "models"], cwd=work, env=env)
    assert all(f"\n{m} " in models for m in MODELS), models
    info = run([rtsr, "info"], cwd=work, env=env)
    assert f"models (read):         {site / 'rtsr' / 'weights'} " in info, info  # the installed copy ran
    assert f"cache (written):       {tmp_path / 'cache'} " in info, info

    done = run([rtsr, "upscale", "clip.mp4", "--max-frames", FRAMES, "-q"], cwd=work, env=env)
    assert "srgan-x4-steady x4 via " in done, done  # the default model for video (auto: measured)
    with av.open(str(work / "clip_x4.mp4")) as out, av.open(str(work / "clip.mp4")) as src:
        assert [s.type for s in out.streams] == [s.type for s in src.streams]  # video + audio kept
        frames = [f.to_ndarray(format="rgb24") for f in out.decode(video=0)]
        first_in = next(src.decode(video=0)).to_ndarray(format="rgb24")
    assert len(frames) == FRAMES and frames[0].shape == (320, 480, 3)
    expected = Upscaler(device="cpu")(first_in)  # the checkout's default model, in this process
    assert psnr(frames[0], expected) > 36, "the installed package's output differs from the model's"

    assert snapshot(site) == before, "rtsr wrote into site-packages"
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.plan"))


def other_python(version: str) -> Path | None:
    """An interpreter of `version` (pyenv's or on PATH) that really runs, or None."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = sorted(pyenv.glob(f"{version}.*/bin/python{version}"))
    candidates = [*reversed(found), shutil.which(f"python{version}")]
    for exe in filter(None, candidates):
        if subprocess.run([exe, "--version"], capture_output=True).returncode == 0:
            return Path(exe)
    return None


IMPORT_CHECK = """
import sys
from importlib import metadata
import rtsr
from rtsr.locations import weights_dir
assert "torch" not in sys.modules, "import rtsr loaded torch"
assert weights_dir().is_relative_to(sys.prefix), weights_dir()
print(metadata.version("rtsr"), " ".join(sorted(p.name for p in weights_dir().glob("*.pt"))))
"""


@pytest.mark.parametrize("version", ["3.10", "3.12", "3.13"])
def test_wheel_installs_and_compiles_on_other_pythons(version: str, dists: dict[str, Path], tmp_path: Path) -> None:
    """The same pure wheel on the other supported Pythons, without torch (a CUDA torch for each
    would be gigabytes): pip accepts it, every module compiles, `import rtsr` finds the weights."""
    python = other_python(version)
    if python is None:
        pytest.skip(f"no Python {version} here (pyenv install {version} to check it)")
    venv = tmp_path / "venv"
    run([python, "-m", "venv", venv])
    py = venv / "bin" / "python"
    run([py, "-m", "pip", "install", "-q", "--no-deps", dists["wheel"]], cwd=tmp_path)
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    run([py, "-m", "compileall", "-q", "-f", site / "rtsr"])
    from rtsr import __version__

    version_seen, *weights = run([py, "-c", IMPORT_CHECK], cwd=tmp_path).split()
    assert version_seen == __version__ and {f"{m}.pt" for m in MODELS} <= set(weights)
