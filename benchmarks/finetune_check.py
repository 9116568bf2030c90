"""Does fine-tuning keep a trained detector? Train N steps from an imported (or any) run folder on a
split, then score Car/Pedestrian/Cyclist AP on the training split itself and on val, before and after.

Training on a split must never lower that split's AP: when it does, the training targets or the recipe
differ from what the weights were trained with (issue "Training you can trust"). Each ``--variant`` is a
set of config overrides; every variant starts from the same weights, so the rows compare directly.

    python benchmarks/finetune_check.py --run runs/reference/small_float32 --steps 100 \
        --variant "aug off=augment.enabled=false" --variant "recipe="

Prints a table (Car moderate AP_R40 and the three difficulties) and writes ``OUTPUT/finetune_check.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_variant(text: str) -> tuple[str, dict]:
    """'name=key=value,key=value' -> (name, {key: yaml value})."""
    name, _, rest = text.partition("=")
    overrides = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant {text!r}: {item!r} is not key=value")
        overrides[key] = yaml.safe_load(value)
    return name.strip(), overrides


def car_ap(result) -> dict:
    car = result.results["Car"]
    return {d: round(car[d].ap_r40, 2) for d in ("easy", "moderate", "hard")}


def score(cfg, weights, samples_by_split, out: Path) -> dict:
    from squeezedet.eval.validate import validate_model
    from squeezedet.inference import load_weights
    from squeezedet.model import build_model

    model = build_model(cfg.model, training_dropout=False)
    load_weights(model, weights)
    return {split: car_ap(validate_model(cfg, model, samples, out / split)) for split, samples in samples_by_split.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="run/import folder with config.yaml and model.weights.h5")
    p.add_argument("--data", default=str(REPO / "assets" / "kitti_sample"))
    p.add_argument("--train-split", help="train (and score) on this split file instead of the config's")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--variant", action="append", default=[], help="'name=key=value,...' (repeatable)")
    p.add_argument("--output", default="runs/finetune_check")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from squeezedet.config import load_config
    from squeezedet.data.kitti_dataset import load_samples
    from squeezedet.train.trainer import train

    run, out = Path(args.run), Path(args.output)
    data = {"data.root": args.data, **({"data.train_split": str(Path(args.train_split).resolve())}
                                         if args.train_split else {})}
    base = load_config(run / "config.yaml", data)
    samples = {s: load_samples(args.data, getattr(base.data, f"{s}_split"), base.model.classes, base.data.class_map)
               for s in ("train", "val")}
    rows = {"imported": score(base, run / "model.weights.h5", samples, out / "imported")}
    print(f"imported: {rows['imported']}", flush=True)
    for name, overrides in map(parse_variant, args.variant or ["recipe="]):
        cfg = load_config(run / "config.yaml", {
            **data, "train.epochs": 1, "train.steps_per_epoch": args.steps, "train.val_every": 0,
            **overrides})
        t0 = time.perf_counter()
        result = train(cfg, out / name, init_weights=run, verbose=0)
        rows[name] = {**score(cfg, out / name / "last.weights.h5", samples, out / name / "eval"),
                      "overrides": overrides, "final_loss": result.final_loss,
                      "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{name}: {rows[name]}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "finetune_check.json").write_text(json.dumps({"steps": args.steps, "rows": rows}, indent=2) + "\n")
    print(f"\nCar AP_R40 after {args.steps} steps (easy / moderate / hard)")
    print(f"{'variant':<28} {'train split':>24} {'val split':>24}")
    for name, r in rows.items():
        cells = ["/".join(f"{r[s][d]:.2f}" for d in ("easy", "moderate", "hard")) for s in ("train", "val")]
        print(f"{name:<28} {cells[0]:>24} {cells[1]:>24}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
