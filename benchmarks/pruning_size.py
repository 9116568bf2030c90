"""What magnitude pruning buys in bytes: SqueezeDet pruned one-shot to several sparsities, exported to
fp32 and int8 TFLite, file and gzip sizes side by side.

Zeros do not shrink a dense .tflite; they make it compress (downloads, OTA updates). The network is
the ImageNet backbone with an untrained head, pruned without fine-tuning, so this measures sizes only.

    python benchmarks/pruning_size.py [--sparsity 0,0.5,0.7] [--input 1248x384] [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "kitti_sample"
PRETRAINED = REPO / "assets" / "pretrained" / "squeezenet_v1.1_imagenet_notop.h5"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sparsity", default="0,0.5,0.7", help="comma-separated fractions of pruned weights")
    p.add_argument("--input", default="1248x384", help="WxH (sizes barely depend on it)")
    p.add_argument("--calib-images", type=int, default=16)
    p.add_argument("--out", help="folder for the models and results.json (default: a temporary folder)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from squeezedet.config import Config, save_config
    from squeezedet.export.benchmark import gzip_size, write_results
    from squeezedet.export.exporter import export_tflite
    from squeezedet.model import build_model
    from squeezedet.model.pretrained import load_pretrained_backbone
    from squeezedet.train.pruning import prune_by_magnitude, sparsity_report

    width, height = (int(v) for v in args.input.lower().split("x"))
    out = Path(args.out or tempfile.mkdtemp(prefix="pruning_size_"))
    out.mkdir(parents=True, exist_ok=True)
    cfg = Config()
    cfg.model.input_width, cfg.model.input_height = width, height
    cfg.model.pretrained_backbone = str(PRETRAINED)
    save_config(cfg, out / "config.yaml")
    rows = []
    for sparsity in (float(s) for s in args.sparsity.split(",")):
        model = build_model(cfg.model, training_dropout=False)
        load_pretrained_backbone(model, PRETRAINED)
        prune_by_magnitude(model, sparsity)
        overall = sparsity_report(model)
        weights = out / f"pruned_{sparsity:g}.weights.h5"
        model.save_weights(str(weights))
        row = {"sparsity": sparsity, "conv_layers_pruned": sum(v > 0 for v in overall.values())}
        for quant in ("fp32", "int8"):
            path = export_tflite(cfg, weights, out / f"pruned_{sparsity:g}_{quant}.tflite", quant,
                                 calib_root=SAMPLE, calib_images=args.calib_images, calib_split="train.txt",
                                 check_images=0)
            row[f"{quant}_bytes"], row[f"{quant}_gzip_bytes"] = path.stat().st_size, gzip_size(path)
        rows.append(row)
    print(f"\nSqueezeDet {width}x{height}, one-shot magnitude pruning (conv1 dense), no fine-tuning\n")
    print("| sparsity | fp32 MB | fp32 gzip MB | int8 MB | int8 gzip MB |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sparsity']:.0%} | {r['fp32_bytes'] / 1e6:.2f} | {r['fp32_gzip_bytes'] / 1e6:.2f} | "
              f"{r['int8_bytes'] / 1e6:.2f} | {r['int8_gzip_bytes'] / 1e6:.2f} |")
    write_results(out / "results.json", rows, input=[width, height])
    print(f"\nmodels and results.json in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
