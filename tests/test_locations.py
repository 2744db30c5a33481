"""Where rtsr reads shipped weights and writes its caches (rtsr.locations)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rtsr.errors import RtsrError
from rtsr.locations import (cache_dir, cache_dir_and_reason, mark_used, tensorrt_cache_dir, trim_cache, weights_dir,
                            write_cache_file)


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No cache variables set, HOME in a temporary folder; returns that HOME."""
    monkeypatch.delenv("RTSR_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_cache_dir_default_is_home_cache(clean_env: Path) -> None:
    assert cache_dir_and_reason() == (clean_env / ".cache" / "rtsr", "default")
    assert tensorrt_cache_dir() == clean_env / ".cache" / "rtsr" / "tensorrt"
    assert not (clean_env / ".cache").exists()  # asking where is not creating it


def test_cache_dir_follows_xdg_cache_home(clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir_and_reason() == (tmp_path / "xdg" / "rtsr", "XDG_CACHE_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # invalid by the XDG spec: ignored
    assert cache_dir() == clean_env / ".cache" / "rtsr"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert cache_dir() == clean_env / ".cache" / "rtsr"


def test_rtsr_cache_dir_wins(clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("RTSR_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir_and_reason() == (tmp_path / "mine", "RTSR_CACHE_DIR")
    assert tensorrt_cache_dir() == tmp_path / "mine" / "tensorrt"
    monkeypatch.setenv("RTSR_CACHE_DIR", "~/elsewhere")
    assert cache_dir() == clean_env / "elsewhere"


def test_info_says_where_models_and_caches_are(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rtsr.info import locations

    monkeypatch.setenv("RTSR_CACHE_DIR", str(tmp_path / "c"))
    shown = locations()
    assert shown["models (read)"].startswith(str(weights_dir()))
    assert shown["cache (written)"].startswith(f"{tmp_path / 'c'} (from RTSR_CACHE_DIR")
    assert shown["tensorrt plans"].startswith(str(tmp_path / "c" / "tensorrt"))


def test_shipped_weights_are_package_data() -> None:
    import rtsr
    from rtsr.models.weights import read_card, shipped_models

    models = shipped_models()
    assert {"srgan-x4", "srgan-x4-lite"} <= set(models)
    for name, path in models.items():
        assert path.parent == weights_dir() and read_card(path).name == name
    # in a checkout the package rtsr.weights is the repo's engines/ (one copy, where train ships)
    if (Path(rtsr.__file__).parents[1] / "engines" / "__init__.py").is_file():
        assert weights_dir() == Path(rtsr.__file__).parents[1] / "engines"


def test_write_cache_file_creates_folders_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.plan"
    assert write_cache_file(target, b"one") == target and target.read_bytes() == b"one"
    write_cache_file(target, b"two")
    assert target.read_bytes() == b"two" and oct(target.stat().st_mode & 0o777) == oct(0o644)
    with pytest.raises(TypeError):
        write_cache_file(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"two" and sorted(p.name for p in target.parent.iterdir()) == ["x.plan"]


WRITER = """
import sys
from pathlib import Path
from rtsr.locations import write_cache_file
target, byte, rounds = Path(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3])
sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
for _ in range(rounds):
    write_cache_file(target, byte * (4 << 20))
"""


def test_two_processes_writing_the_same_cache_file(tmp_path: Path) -> None:
    """Two builds finishing at once: each write is whole, the last one wins, nothing is left over."""
    target = tmp_path / "cache" / "tensorrt" / "model.plan"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(target), byte, "15"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True) for byte in "AB"]
    for w in writers:  # both imported and waiting: start them together
        assert w.stdout.readline() == "ready\n"
    for w in writers:
        w.stdin.write("go\n")
        w.stdin.flush()
    while any(w.poll() is None for w in writers):
        if target.exists():
            data = target.read_bytes()
            assert len(data) == 4 << 20 and data.count(data[:1]) == len(data), "a reader saw a torn file"
    assert [w.wait() for w in writers] == [0, 0]
    data = target.read_bytes()
    assert data in (b"A" * (4 << 20), b"B" * (4 << 20))
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.plan"]


def test_missing_weights_package_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import rtsr.locations

    monkeypatch.setattr(rtsr.locations, "WEIGHTS_PACKAGE", "rtsr.no_such_package")
    with pytest.raises(RtsrError, match="rtsr.no_such_package is missing"):
        weights_dir()


def test_trim_cache_removes_the_least_recently_used_first(tmp_path: Path) -> None:
    """mtime orders use (a hit marks it); the file just written, what was used in the last
    minutes, symlinks, folders, temporary files and files not of rtsr's patterns stay."""
    files = {}
    for age, name in enumerate(["c", "b", "a", "keep"]):  # used long ago: c last, then b, a, keep
        files[name] = tmp_path / f"{name}.blob"
        files[name].write_bytes(b"x" * 100)
        os.utime(files[name], ns=(0, (10 - age) * 10**9))
    (tmp_path / ".c.blob.x1.tmp").write_bytes(b"x" * 1000)  # another writer's half-written file
    (tmp_path / "notes.txt").write_bytes(b"x" * 1000)       # not rtsr's
    (tmp_path / "link.blob").symlink_to(files["c"])
    (tmp_path / "dir.blob").mkdir()
    mark_used(files["a"])  # a hit: the most recently used, and inside the grace period
    assert trim_cache(tmp_path, 200, files["keep"], ("*.blob",)) == [files["b"], files["c"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".c.blob.x1.tmp", "a.blob", "dir.blob", "keep.blob",
                                                          "link.blob", "notes.txt"]
    new = write_cache_file(tmp_path / "new.blob", b"y" * 50)
    assert trim_cache(tmp_path, 0, new, ("*.blob",)) == [files["keep"]]  # a (just used) and new stay
    assert trim_cache(tmp_path / "missing", 0, new, ("*.blob",)) == []  # nothing to trim is no error


@pytest.mark.parametrize("value", [-1, "2G", None, True])
def test_cache_mib_must_be_a_whole_number(value: object, tmp_path: Path) -> None:
    from rtsr.settings import load_settings

    yaml_path = tmp_path / "runtime.yaml"
    yaml_path.write_text(f"cache_mib: {value if value is not None else 'null'}\n")
    with pytest.raises(RtsrError, match="cache_mib must be a whole number"):
        load_settings(yaml_path)
