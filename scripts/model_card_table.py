"""The MODEL_CARD tables from the metrics.json files that scripts/import_reference_model.sh writes.

    python scripts/model_card_table.py runs/reference                      # print them
    python scripts/model_card_table.py runs/reference --write MODEL_CARD.md # replace them in the card

``--write`` replaces the text between ``<!-- NAME -->`` and ``<!-- /NAME -->`` markers (reference-table,
detail-table, car-delta), atomically; tests/test_bundled_model.py reads the rows back.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from squeezedet.core.io import atomic_write_text  # noqa: E402

VARIANTS = {"small_float32": "small 960x288, float32 set (shipped)", "small_8bit": "small 960x288, 8-bit graph",
            "full_8bit": "full 1242x375 VALID, 8-bit graph"}
RUNTIMES = {"keras": "Keras fp32", "fp32": "TFLite fp32", "int8": "TFLite int8"}
#: Row labels of the shipped model's detail table (the tests search for these).
DETAIL_LABELS = {"keras": "Keras fp32 (imported)", "int8": "**TFLite int8 (this file)**"}
CLASSES = ("Car", "Pedestrian", "Cyclist")
DIFFICULTIES = ("easy", "moderate", "hard")


def load(run: Path, variant: str, runtime: str, split: str) -> dict | None:
    path = run / variant / f"val_{runtime}_{split}" / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def reference_table(run: Path) -> str:
    lines = ["| variant | runtime | split | Car | Pedestrian | Cyclist | mean |", "|---|---|---|---|---|---|---|"]
    for variant, vname in VARIANTS.items():
        for runtime, rname in RUNTIMES.items():
            for split in ("val", "train"):
                m = load(run, variant, runtime, split)
                if m is not None:
                    cells = [f"{m['classes'][c]['moderate']['AP_R40']:.2f}" for c in CLASSES]
                    lines.append(f"| {vname} | {rname} | {split} | {' | '.join(cells)} | "
                                 f"{m['mean']['moderate']['AP_R40']:.2f} |")
    return "\n".join(lines)


def detail_table(run: Path, variant: str = "small_float32", split: str = "val") -> str:
    lines = ["| model | class | easy | moderate | hard | GT (E/M/H) |", "|---|---|---|---|---|---|"]
    for runtime, label in DETAIL_LABELS.items():
        m = load(run, variant, runtime, split)
        if m is None:
            raise SystemExit(f"{run}/{variant}/val_{runtime}_{split}/metrics.json missing: run the import script")
        for i, c in enumerate(CLASSES):
            r = m["classes"][c]
            cells = [f"{r[d]['AP_R40']:.2f} / {r[d]['AP_R11']:.2f}" for d in DIFFICULTIES]
            gt = " / ".join(str(r[d]["num_gt"]) for d in DIFFICULTIES)
            lines.append(f"| {label if i == 0 else ''} | {c} | {' | '.join(cells)} | {gt} |")
    return "\n".join(lines)


def car_delta(run: Path) -> str:
    f, q = (load(run, "small_float32", r, "val")["classes"]["Car"]["moderate"]["AP_R40"] for r in ("keras", "int8"))
    return f"Car moderate AP_R40 {f:.2f} (float import) -> {q:.2f} (int8), a change of {q - f:+.2f} points"


def write(card: Path, blocks: dict[str, str]) -> None:
    text = card.read_text()
    for name, body in blocks.items():
        pattern = re.compile(rf"(<!-- {name} -->\n).*?(<!-- /{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{card}: markers <!-- {name} --> ... <!-- /{name} --> not found")
        text = pattern.sub(lambda mt: mt.group(1) + body + "\n" + mt.group(2), text)
    atomic_write_text(card, text)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", default="runs/reference", type=Path)
    ap.add_argument("--write", type=Path, help="MODEL_CARD.md to update in place")
    args = ap.parse_args()
    blocks = {"reference-table": reference_table(args.run), "detail-table": detail_table(args.run),
              "car-delta": car_delta(args.run)}
    if args.write:
        write(args.write, blocks)
        print(f"updated {args.write}")
    else:
        print("\n\n".join(blocks.values()))
