"""Regenerate README's model and performance tables from the model cards and the JSON records
in benchmarks/results/, so no number in README is typed by hand.

    python benchmarks/report.py            # print the tables
    python benchmarks/report.py --write    # replace them in README.md between their markers
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtsr.models.weights import read_card, shipped_models  # noqa: E402

README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"


def _training_summary(t: dict) -> str:
    """Steps and time of every cycle a model went through (continuations keep the earlier one);
    a weight mean (train/soup.py) names its ingredients and the training of the main one."""
    if t.get("stage") == "soup":
        parts = sorted(t["ingredients"], key=lambda i: -i["weight"])
        mean = " + ".join(f"{i['weight']:.2f} x `{i['model']}`" for i in parts)
        return f"weight mean {mean}; {parts[0]['model']}: {_training_summary(parts[0]['training'])}"
    cycles = []
    while t:
        cycles.append(t)
        t = t.get("init_training") or {}
    cycles.reverse()
    steps = " + ".join(str(c.get("steps")) for c in cycles)
    minutes = " + ".join(f"{c.get('wall_time_s', 0) / 60:.0f}" for c in cycles)
    precisions = " then ".join(dict.fromkeys(c.get("precision", "fp32") for c in cycles))
    last = cycles[-1]
    return (f"{steps} steps, {last.get('content_loss')}, {precisions}, "
            f"{last.get('hardware')}, {minutes} min")


def _compressed_gains(metrics: dict) -> str:
    gains = [metrics[k]["psnr_y"] - metrics[k]["bicubic"]["psnr_y"] for k in ("h264_crf23", "h264_crf30") if k in metrics]
    return " / ".join(f"{g:+.2f}" for g in gains) + " dB" if gains else "not measured"


def _flicker(metrics: dict) -> str:
    t = metrics.get("temporal", {}).get("h264_crf23")
    return f"{t['flicker']:.2f} (bicubic {t['bicubic']:.2f})" if t else "not measured"


def _wallpaper_gains(metrics: dict) -> str:
    d = metrics.get("heldout_debs")
    if not d:
        return "not measured"
    worst = min(d["gain_per_photo_db"].items(), key=lambda kv: kv[1])
    return f"{d['gain_vs_bicubic_db']:+.2f} dB (worst: {worst[0]} {worst[1]:+.2f})"


def model_table() -> str:
    lines = ["| model | blocks x channels | kind | held-out PSNR-Y | vs bicubic | SSIM-Y | bicubic PSNR/SSIM "
             "| vs bicubic, LR through H.264 CRF 23 / 30 | flicker, panned through H.264 CRF 23 "
             "| vs bicubic, 5 held-out wallpaper photos | trained |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, path in shipped_models().items():
        card = read_card(path)
        m, t, c = card.metrics, card.training, card.config
        if "psnr_y" not in m:
            continue
        skip = " + bicubic skip" if c.get("skip", "none") == "bicubic" else ""
        lines.append(f"| `{name}` | {c['num_blocks']} x {c['channels']}{skip} | {card.kind} | {m['psnr_y']:.2f} dB | "
                     f"{m['gain_vs_bicubic_db']:+.2f} dB | {m['ssim_y']:.4f} | {m['bicubic']['psnr_y']:.2f} / "
                     f"{m['bicubic']['ssim_y']:.4f} | {_compressed_gains(m)} | {_flicker(m)} | {_wallpaper_gains(m)} | "
                     f"{_training_summary(t)} |")
    return "\n".join(lines)


def _rows(record: dict) -> list[dict]:
    """A record's table rows: fps.py-style records list them; benchmarks/scaling.py's give the best
    run of each setup (end to end on one clip, frames one by one); other kinds have none."""
    if "rows" in record:
        return record["rows"]
    return [{"kind": "scaling", "name": name, "model": record["model"], "size": record["clip"]["size"], "batch": 1,
             "fps": run["fps"], "ms_per_frame": 1000 / run["fps"]} for name, run in record.get("best", {}).items()]


def performance_table() -> str:
    lines = ["| record | device | row | model | input | batch | fps | ms/frame |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for path in sorted(RESULTS.glob("*.json")):
        record = json.loads(path.read_text())
        device = record["environment"]["device"]
        for r in _rows(record):
            lines.append(f"| {path.name} | {device} | {r['kind']}: {r['name']} | {r['model']} | {r['size']} | "
                         f"{r['batch']} | {r['fps']:.2f} | {r['ms_per_frame']:.1f} |")
    return "\n".join(lines)


def replace_between(text: str, marker: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {marker} -->\n)(?:.*?\n)?(<!-- /{marker} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {marker} --> block")
    return pattern.sub(lambda m: m[1] + body + "\n" + m[2], text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    tables = {"models": model_table(), "performance": performance_table()}
    if not args.write:
        for name, body in tables.items():
            print(f"## {name}\n{body}\n")
        return
    text = README.read_text()
    for name, body in tables.items():
        text = replace_between(text, name, body)
    README.write_text(text)
    print("README.md tables updated")


if __name__ == "__main__":
    main()
