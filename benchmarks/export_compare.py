"""Every back end x precision next to the Keras model it came from, from one run on one machine:
latency (median / p90, interleaved), size, KITTI AP on the sample split, int8-vs-fp32 AP per back end.

Exports the model to TFLite (fp32 / fp16 / int8), ONNX (fp32 / int8, run by ONNX Runtime) and OpenVINO
IR (fp32 / fp16 / int8), loads every file on its back end plus Keras itself, then times them in rounds
(each round runs every engine once on the same frame), so background load hits them all alike.

Latency is measured at --speed-size (default 1248x384, the paper's KITTI input); published weights only
detect at the geometry they were trained at (the bundled model: 960x288), so when the two differ every
format is exported twice from the same weights: at --speed-size for the timing, at the model's own size for
AP on the sample val split. Without --weights it uses SqueezeDet with the ImageNet backbone and an untrained
head: right for speed and size, meaningless for AP (the table says so).

    python benchmarks/export_compare.py [--weights W --config C] [--threads 2] [--runs 30] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "kitti_sample"
PRETRAINED = REPO / "assets" / "pretrained" / "squeezenet_v1.1_imagenet_notop.h5"
#: (format, precision, suffix, back end that runs it)
COMBOS = (
    ("tflite", "fp32", ".tflite", "litert"),
    ("tflite", "fp16", ".tflite", "litert"),
    ("tflite", "int8", ".tflite", "litert"),
    ("onnx", "fp32", ".onnx", "onnxruntime"),
    ("onnx", "int8", ".onnx", "onnxruntime"),
    ("openvino", "fp32", ".xml", "openvino"),
    ("openvino", "fp16", ".xml", "openvino"),
    ("openvino", "int8", ".xml", "openvino"),
)
AP_CLASSES = ("Car", "Pedestrian", "Cyclist")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="Keras .weights.h5 (default: pretrained backbone, untrained head)")
    p.add_argument("--config", help="config of --weights (default: config.yaml beside them)")
    p.add_argument("--data", default=str(SAMPLE), help="KITTI folder: train split calibrates, val split measures AP")
    p.add_argument("--calib-images", type=int, default=64, help="int8 calibration images (default 64)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=30, help="timed rounds (each runs every engine once)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--formats", default="tflite,onnx,openvino", help="subset of tflite,onnx,openvino")
    p.add_argument("--speed-size", default="1248x384", help="input WxH for the latency columns (default 1248x384)")
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


def val_ap(predictor, data: str, split: str, class_map: dict, out: Path) -> dict:
    """Moderate AP_R40 per class on ``split`` (the evaluator's table is kept out of this script's output)."""
    from squeezedet.data.kitti_dataset import load_samples
    from squeezedet.eval.validate import validate

    samples = load_samples(data, split, predictor.class_names, class_map)
    with contextlib.redirect_stdout(io.StringIO()):
        result = validate(predictor, samples, out, quiet=True)
    return {c: result.results[c]["moderate"].ap_r40 for c in AP_CLASSES if c in result.results}


def interleaved(engines: dict, x: np.ndarray, runs: int, warmup: int) -> dict:
    """ms per call of each engine, timed in rounds that run every engine once."""
    for fn in engines.values():
        for _ in range(warmup):
            fn(x)
    times = {k: [] for k in engines}
    for _ in range(runs):
        for k, fn in engines.items():
            t0 = time.perf_counter()
            fn(x)
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: np.asarray(v) for k, v in times.items()}


def fmt_ap(v) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.2f}"


def setup_logging() -> None:
    """Timestamped INFO logs, the converters' own chatter (tf2onnx, NNCF, absl) held to warnings."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("tf2onnx", "nncf", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    from squeezedet.export import benchmark

    # Before anything touches TensorFlow: its thread pools are sized once per process.
    benchmark.configure_tf_threads(args.threads)
    import tensorflow as tf

    from squeezedet.backends import BackendOptions, load_backend
    from squeezedet.export.exporter import export_model
    from squeezedet.export.graph import load_inference_model
    from squeezedet.inference import KerasPredictor, ModelPredictor, config_for_weights

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="export_compare_"))
    out.mkdir(parents=True, exist_ok=True)
    if args.weights:
        cfg, weights = config_for_weights(args.weights, args.config), Path(args.weights)
    else:
        cfg, weights = initial_weights(out)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    combos = [c for c in COMBOS if c[0] in formats]
    speed_w, speed_h = (int(v) for v in args.speed_size.lower().split("x"))
    speed_cfg = cfg.model_copy(deep=True)
    speed_cfg.model.input_width, speed_cfg.model.input_height = speed_w, speed_h

    def export_all(config, folder: Path) -> dict:
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for fmt, quant, suffix, _ in combos:
            t0 = time.perf_counter()
            paths[(fmt, quant)] = export_model(
                config, weights, folder / f"{config.model.architecture}_{fmt}_{quant}{suffix}", fmt, quant,
                calib_root=args.data, calib_images=args.calib_images, calib_split=config.data.train_split,
                check_root=args.data, check_split=config.data.val_split, check_images=4,
            )
            logging.info("exported %s %s at %dx%d in %.0f s", fmt, quant, *config.model.input_size,
                         time.perf_counter() - t0)
        return paths

    native = export_all(cfg, out / f"{cfg.model.input_width}x{cfg.model.input_height}")
    speed = native if speed_cfg.model.input_size == cfg.model.input_size else export_all(
        speed_cfg, out / f"{speed_w}x{speed_h}")

    keras_speed = load_inference_model(speed_cfg.model, weights)
    forward = tf.function(lambda x: keras_speed(x, training=False))
    engines = {("keras", "fp32"): lambda x: forward(tf.constant(x)).numpy()}
    loaded = {}
    for fmt, quant, _, backend in combos:
        loaded[(fmt, quant)] = load_backend(speed[(fmt, quant)], backend, BackendOptions(num_threads=args.threads))
        engines[(fmt, quant)] = loaded[(fmt, quant)]
    x = np.random.default_rng(0).integers(0, 256, (1, speed_h, speed_w, 3), np.uint8)
    times = interleaved(engines, x, args.runs, args.warmup)

    keras_native = load_inference_model(cfg.model, weights)
    aps = {("keras", "fp32"): val_ap(KerasPredictor(cfg, model=keras_native), args.data, cfg.data.val_split,
                                     cfg.data.class_map, out / "val_keras")}
    for fmt, quant, _, backend in combos:
        pred = ModelPredictor(native[(fmt, quant)], num_threads=args.threads, backend=backend)
        aps[(fmt, quant)] = val_ap(pred, args.data, cfg.data.val_split, cfg.data.class_map,
                                   out / f"val_{fmt}_{quant}")

    keras_ms = float(np.median(times[("keras", "fp32")]))
    rows = []
    for key, t in times.items():
        fmt, quant = key
        engine = loaded.get(key)
        row = {"format": fmt, "precision": quant, "backend": engine.name if engine else "tensorflow",
               "runtime": engine.describe() if engine else f"tensorflow {tf.__version__}",
               "median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)),
               "speedup_vs_keras": keras_ms / float(np.median(t)),
               "size_bytes": benchmark.model_row(engine, args.threads)["size_bytes"] if engine
               else weights.stat().st_size,
               "ap_moderate": aps[key]}
        rows.append(row)

    trained = any(v > 1.0 for r in rows for v in r["ap_moderate"].values() if not math.isnan(v))
    host = benchmark.host_info()
    print(f"\nSqueezeDet ({cfg.model.architecture}), weights {weights}; latency at {speed_w}x{speed_h}, "
          f"{args.threads} threads, {args.runs} interleaved rounds; AP_R40 moderate at the model's "
          f"{cfg.model.input_width}x{cfg.model.input_height} on {args.data} split {cfg.data.val_split}; host: {host}\n")
    print("| format | precision | back end | median ms | p90 ms | vs Keras | size MB | AP Car mod | AP Ped mod | "
          "AP Cyc mod |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ap = r["ap_moderate"]
        print(f"| {r['format']} | {r['precision']} | {r['runtime']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | "
              f"{r['speedup_vs_keras']:.2f}x | {r['size_bytes'] / 1e6:.2f} | {fmt_ap(ap.get('Car'))} | "
              f"{fmt_ap(ap.get('Pedestrian'))} | {fmt_ap(ap.get('Cyclist'))} |")
    int8 = [r for r in rows if r["precision"] == "int8"]
    if int8:
        best = min(int8, key=lambda r: r["median_ms"])
        print(f"\nfastest int8: {best['format']} on {best['backend']}, {best['median_ms']:.1f} ms "
              f"(target <= 40 ms: {'met' if best['median_ms'] <= 40 else 'MISSED'}), "
              f"{best['speedup_vs_keras']:.2f}x Keras fp32 (target >= 3.5x: "
              f"{'met' if best['speedup_vs_keras'] >= 3.5 else 'MISSED'})")
    for r in int8:
        fp32 = next((f for f in rows if f["format"] == r["format"] and f["precision"] == "fp32"), None)
        if fp32 is not None and trained:
            delta = r["ap_moderate"].get("Car", math.nan) - fp32["ap_moderate"].get("Car", math.nan)
            print(f"{r['format']} int8 - fp32, Car moderate AP_R40: {delta:+.2f} points "
                  f"(target within 1.0: {'met' if abs(delta) <= 1.0 else 'MISSED'})")
    if not trained:
        print("\nAP: the head is untrained (no --weights), so AP is meaningless here; pass a trained model.")
    benchmark.write_results(out / "results.json", rows, threads=args.threads, runs=args.runs,
                            weights=str(weights), data=args.data, speed_size=[speed_w, speed_h],
                            ap_size=list(cfg.model.input_size))
    print(f"\nmodels, export_report.json and results.json in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
