"""The benchmark is not a test, but its --quick mode must run and write a valid record."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fps.py"), "--quick", "--sizes", "64x48",
                           "--batches", "1", "--frames", "4", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    assert record["environment"]["torch"] and record["environment"]["git"] is not None
    kinds = {(r["kind"], r["name"]) for r in record["rows"]}
    assert any(k == "model" and n.startswith("torch-") for k, n in kinds)
    assert ("baseline", "opencv-bicubic") in kinds
    assert ("end-to-end", "naive-loop-cpu-fp32") in kinds
    assert all(r["fps"] > 0 for r in record["rows"])
    assert "fps" in proc.stdout and "end-to-end" in proc.stdout


def test_report_renders_every_kind_of_record(tmp_path: Path, monkeypatch) -> None:
    """fps.py rows as they are, scaling.py's best runs as rows, a record of neither kind skipped
    (a scaling record once stopped `report.py --write` with KeyError 'rows')."""
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    env = {"environment": {"device": "cpu"}}
    row = {"kind": "model", "name": "torch-cpu", "model": "m", "size": "64x48", "batch": 1, "fps": 2.0,
           "ms_per_frame": 500.0}
    records = {"a-fps.json": {**env, "rows": [row]}, "c-other.json": env,
               "b-scaling.json": {**env, "model": "m", "clip": {"size": "160x90"},
                                  "best": {"pool, 2 workers": {"fps": 4.0}}}}
    for name, record in records.items():
        (tmp_path / name).write_text(json.dumps(record))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    assert report.performance_table().splitlines()[2:] == [
        "| a-fps.json | cpu | model: torch-cpu | m | 64x48 | 1 | 2.00 | 500.0 |",
        "| b-scaling.json | cpu | scaling: pool, 2 workers | m | 160x90 | 1 | 4.00 | 250.0 |"]
