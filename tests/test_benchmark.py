"""The benchmark is not a test, but its --quick mode must run and write a valid record."""
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
