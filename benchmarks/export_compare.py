"""fp32 / fp16 / int8 TFLite next to the Keras model they came from: latency, size, params, MACs, and how
closely int8 reproduces fp32 detections, in one run at one thread count.

Without --weights it exports SqueezeDet at 1248x384 with the ImageNet backbone and an untrained head,
which is enough for speed and size (the graph and the weight count are those of the real model) but
not for detection agreement: an untrained head detects nothing, and the table says so.

    python benchmarks/export_compare.py [--weights W --config C] [--threads 2] [--runs 30] [--out DIR]
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
    p.add_argument("--weights", help="Keras .weights.h5 (default: pretrained backbone, untrained head)")
    p.add_argument("--config", help="config of --weights (default: config.yaml beside them)")
    p.add_argument("--data", default=str(SAMPLE), help="KITTI folder: train split calibrates, val split checks")
    p.add_argument("--calib-images", type=int, default=64, help="int8 calibration images (default 64)")
    p.add_argument("--check-images", type=int, default=16, help="val images for int8-vs-fp32 agreement")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", help="folder for the models and results.json (default: a temporary folder)")
    return p.parse_args(argv)


def initial_weights(out: Path):
    """Config (defaults: 1248x384) + weights of SqueezeDet with the ImageNet backbone, saved in ``out``."""
    from squeezedet.config import Config, save_config
    from squeezedet.model import build_model
    from squeezedet.model.pretrained import load_pretrained_backbone

    cfg = Config()
    cfg.model.pretrained_backbone = str(PRETRAINED)
    model = build_model(cfg.model, training_dropout=False)
    load_pretrained_backbone(model, PRETRAINED)
    weights = out / "pretrained_backbone.weights.h5"
    model.save_weights(str(weights))
    save_config(cfg, out / "config.yaml")
    return cfg, weights


def agreement(fp32_path: Path, int8_path: Path, images) -> dict:
    from squeezedet.export.equivalence import detection_agreement
    from squeezedet.inference import TFLitePredictor

    fp32, int8 = TFLitePredictor(fp32_path), TFLitePredictor(int8_path)
    ref = [fp32.predict(im) for im in images]
    got = [int8.predict(im) for im in images]
    return {**detection_agreement(ref, got), "images": len(images), "fp32_detections": sum(len(d) for d in ref)}


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    from squeezedet.export import benchmark

    # Before anything touches TensorFlow: its thread pools are sized once per process.
    benchmark.configure_tf_threads(args.threads)
    from squeezedet.core.preprocess import read_image_rgb
    from squeezedet.export.calibration import list_images
    from squeezedet.export.tflite import export_tflite
    from squeezedet.inference import config_for_weights

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="export_compare_"))
    out.mkdir(parents=True, exist_ok=True)
    if args.weights:
        cfg, weights = config_for_weights(args.weights, args.config), Path(args.weights)
    else:
        cfg, weights = initial_weights(out)
    paths = {}
    for quant in ("fp32", "fp16", "int8"):
        paths[quant] = export_tflite(
            cfg, weights, out / f"{cfg.model.architecture}_{quant}.tflite", quant,
            calib_root=args.data, calib_images=args.calib_images, calib_split=cfg.data.train_split,
            check_root=args.data, check_split=cfg.data.val_split, check_images=4,
        )
    rows = [benchmark.bench_keras(weights, cfg, args.runs, args.warmup)]
    rows += [benchmark.bench_tflite(paths[q], args.threads, args.runs, args.warmup) for q in ("fp32", "fp16", "int8")]
    keras_ms = rows[0]["median_ms"]
    for r in rows:
        r["speedup_vs_keras"] = keras_ms / r["median_ms"]
    check = [read_image_rgb(p) for p in list_images(args.data, cfg.data.val_split)[: args.check_images]]
    agree = agreement(paths["fp32"], paths["int8"], check)

    print(f"\nSqueezeDet ({cfg.model.architecture}) {cfg.model.input_width}x{cfg.model.input_height}, "
          f"{args.threads} thread(s), {args.runs} runs, host: {benchmark.host_info()}\n")
    print(benchmark.markdown_table(rows))
    print("\n| model | speed-up vs Keras |\n|---|---|")
    for r in rows:
        print(f"| {r['format']} | {r['speedup_vs_keras']:.2f}x |")
    if agree["confident"]:
        print(f"\nint8 vs fp32 on {agree['images']} val images: {agree['agreed']}/{agree['confident']} confident fp32 "
              f"detections (score >= {agree['min_score']}) have an int8 detection of the same class with IoU > "
              f"{agree['min_iou']} (worst IoU {agree['worst_iou']:.3f})")
    else:
        print(f"\nint8 vs fp32: no confident fp32 detections on {agree['images']} val images "
              "(untrained head?) - pass --weights of a trained model to measure agreement")
    benchmark.write_results(out / "results.json", rows, agreement=agree, threads=args.threads, runs=args.runs)
    print(f"\nmodels, export_report.json and results.json in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
