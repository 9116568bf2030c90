"""`squeezedet export` (Keras weights -> .tflite, .onnx or OpenVINO IR + metadata + equivalence report) and
`squeezedet benchmark` (latency / size / params / MACs of exported models and Keras weights)."""

from __future__ import annotations

import logging
from pathlib import Path

from squeezedet.commands import add_backend_arguments, backend_options
from squeezedet.errors import ConfigError, ModelFileError

log = logging.getLogger(__name__)

EXPORTED = (".tflite", ".onnx", ".xml")


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export Keras weights to .tflite, .onnx or OpenVINO IR (fp32, fp16 or int8) with its metadata",
        description="Convert weights to TFLite, ONNX or OpenVINO IR (uint8 image in, raw ConvDet out), write the "
        "sidecar metadata, then compare Keras and the export on a few held-out images (export_report.json beside "
        "the model).",
    )
    p.add_argument("--weights", required=True, help="Keras .weights.h5")
    p.add_argument("--config", help="config of --weights (default: config.yaml beside them)")
    p.add_argument("--format", default="tflite",
                   help="tflite (default; fp32/fp16/int8), onnx (fp32/int8) or openvino (fp32/fp16/int8)")
    p.add_argument("--quantize", default="int8", help="fp32, fp16 or int8 (default)")
    p.add_argument("--calib-data", help="int8 calibration images: KITTI folder or image folder (default: data.root)")
    p.add_argument("--calib-images", type=int, default=300, help="number of calibration images (default 300)")
    p.add_argument("--calib-split", help="split of --calib-data to calibrate on (default: data.train_split)")
    p.add_argument("--check-data", help="images for the Keras/TFLite check (default: the val split of data.root)")
    p.add_argument("--check-split", help="split of --check-data (default: every image)")
    p.add_argument("--check-images", type=int, default=4, help="images in the equivalence check (0 = skip)")
    p.add_argument("--output", required=True,
                   help="model.tflite / model.onnx / model.xml (+ model.bin) to write; model.json goes beside it")
    p.set_defaults(func=run_export)

    b = sub.add_parser(
        "benchmark",
        help="latency, FPS, size, params and MACs of exported models (any back end) and Keras weights",
        description="Time single-image inference of each --model at each thread count; print a table and "
        "optionally write JSON. Keras .weights.h5 use --config (in order) or the config.yaml beside them; a "
        "saved .keras model needs none.",
    )
    b.add_argument("--model", action="append", required=True,
                   help=".tflite, .onnx, OpenVINO .xml, .keras or .weights.h5 (repeatable)")
    b.add_argument("--config", action="append", default=[], help="config of each .weights.h5 --model, in order")
    b.add_argument("--threads", default="1,2,4", help="comma-separated thread counts (default 1,2,4)")
    b.add_argument("--runs", type=int, default=50, help="timed runs per model and thread count")
    b.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    b.add_argument("--output", help="write results as JSON here")
    add_backend_arguments(b)
    b.set_defaults(func=run_benchmark)


def run_export(args) -> int:
    from squeezedet.export.exporter import check_request, export_model
    from squeezedet.inference import config_for_weights

    check_request(args.format, args.quantize, Path(args.output))
    if not Path(args.weights).is_file():
        raise ModelFileError(f"{args.weights}: weights file not found")
    cfg = config_for_weights(args.weights, args.config)
    out = export_model(
        cfg,
        args.weights,
        args.output,
        fmt=args.format,
        quantize=args.quantize,
        calib_root=args.calib_data,
        calib_images=args.calib_images,
        calib_split=args.calib_split or cfg.data.train_split,
        check_root=args.check_data,
        check_split=args.check_split,
        check_images=args.check_images,
    )
    print(out)
    return 0


def parse_threads(text: str) -> list[int]:
    try:
        threads = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        raise ConfigError(f"--threads {text!r}: expected positive integers separated by commas, e.g. 1,2,4")
    return threads


def run_benchmark(args) -> int:
    from squeezedet.export import benchmark

    threads = parse_threads(args.threads)
    if args.runs < 1 or args.warmup < 0:
        raise ConfigError(f"--runs must be >= 1 and --warmup >= 0 (got {args.runs}, {args.warmup})")
    models = [Path(m) for m in args.model]
    for m in models:
        if not m.is_file():
            raise ModelFileError(f"{m}: model file not found")
        if m.suffix not in EXPORTED + (".keras",) and not m.name.endswith(".h5"):
            raise ConfigError(f"{m}: expected a .tflite, .onnx, OpenVINO .xml, a saved .keras model or Keras .weights.h5")
    weights = [m for m in models if m.name.endswith(".h5")]  # these need a config; .keras files carry theirs
    if len(args.config) > len(weights):
        raise ConfigError(f"{len(args.config)} --config given for {len(weights)} Keras weights file(s)")
    rows = []
    keras_models = [m for m in models if m.suffix not in EXPORTED]
    if keras_models:
        from squeezedet.inference import config_for_weights

        given = iter(args.config + [None] * len(weights))  # --config pairs with the .h5 models, in order
        configs = [config_for_weights(m, next(given)) if m in weights else None for m in keras_models]
        # TF sizes its pools once per process: Keras runs at the largest thread count asked for.
        benchmark.configure_tf_threads(max(threads))
        for m, cfg in zip(keras_models, configs, strict=True):
            rows.append(benchmark.bench_keras(m, cfg, args.runs, args.warmup))
    options = backend_options(args)
    for m in models:
        if m.suffix in EXPORTED:
            rows.extend(benchmark.bench_model(m, t, args.runs, args.warmup, args.backend, options) for t in threads)
    print(benchmark.markdown_table(rows))
    if args.output:
        benchmark.write_results(args.output, rows, runs=args.runs, warmup=args.warmup)
        log.info("wrote %s", args.output)
    return 0
