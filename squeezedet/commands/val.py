"""`squeezedet val`: a model (Keras weights or an exported .tflite, .onnx or OpenVINO .xml) over a KITTI split -> results + official metrics."""

from __future__ import annotations

import logging
from pathlib import Path

from squeezedet.commands import add_model_arguments, backend_options
from squeezedet.eval.validate import validate

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("val", help="run a model (Keras weights or an exported .tflite, .onnx or OpenVINO .xml) over a split and evaluate it")
    add_model_arguments(p)
    p.add_argument("--data", required=True, help="KITTI folder")
    p.add_argument("--split", default="val", help="split file or name (default: val)")
    p.add_argument("--output", help="results/, metrics.json, pr_curves.png (default: runs/val/<model name>)")
    p.set_defaults(func=run)


def run(args) -> int:
    from squeezedet.config import load_config
    from squeezedet.data.kitti_dataset import load_samples
    from squeezedet.inference import config_for_weights, load_predictor

    predictor = load_predictor(args.weights, args.model, args.config, args.threads, args.backend,
                               backend_options(args))
    cfg = config_for_weights(args.weights, args.config) if args.weights else load_config(args.config)
    samples = load_samples(args.data, args.split, predictor.class_names, cfg.data.class_map)
    out = Path(args.output or Path("runs/val") / Path(args.weights or args.model).stem)
    validate(predictor, samples, out)
    log.info("wrote %s", out / "metrics.json")
    return 0
