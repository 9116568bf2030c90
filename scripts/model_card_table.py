"""Print the MODEL_CARD tables from the metrics.json files that scripts/import_reference_model.sh writes.

    python scripts/model_card_table.py runs/reference
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

VARIANTS = {"small_float32": "small, float32 (shipped)", "small_8bit": "small, 8-bit graph",
            "full_8bit": "full 1242x375, 8-bit graph"}
RUNTIMES = {"keras": "Keras fp32", "fp32": "TFLite fp32", "int8": "TFLite int8"}
CLASSES = ("Car", "Pedestrian", "Cyclist")


def load(run: Path, variant: str, runtime: str, split: str) -> dict | None:
    path = run / variant / f"val_{runtime}_{split}" / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def summary(run: Path) -> None:
    print("| variant | runtime | split | Car mod. R40 | Ped. mod. R40 | Cyc. mod. R40 | mean mod. R40 |")
    print("|---|---|---|---|---|---|---|")
    for variant, vname in VARIANTS.items():
        for runtime, rname in RUNTIMES.items():
            for split in ("val", "train"):
                m = load(run, variant, runtime, split)
                if m is None:
                    continue
                cells = [f"{m['classes'][c]['moderate']['AP_R40']:.2f}" for c in CLASSES]
                print(f"| {vname} | {rname} | {split} | {' | '.join(cells)} | {m['mean']['moderate']['AP_R40']:.2f} |")


def detail(run: Path, variant: str = "small_float32", split: str = "val") -> None:
    print(f"\n{VARIANTS[variant]}, {split} split, AP_R40 / AP_R11 per class and difficulty")
    print("| runtime | class | easy | moderate | hard | GT (E/M/H) |")
    print("|---|---|---|---|---|---|")
    for runtime in ("keras", "int8"):
        m = load(run, variant, runtime, split)
        if m is None:
            continue
        for c in CLASSES:
            r = m["classes"][c]
            cells = [f"{r[d]['AP_R40']:.2f} / {r[d]['AP_R11']:.2f}" for d in ("easy", "moderate", "hard")]
            gt = "/".join(str(r[d]["num_gt"]) for d in ("easy", "moderate", "hard"))
            print(f"| {RUNTIMES[runtime]} | {c} | {' | '.join(cells)} | {gt} |")


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/reference")
    summary(root)
    detail(root)
