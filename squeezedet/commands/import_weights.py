"""`squeezedet import`: published SqueezeDet weights -> DIR/model.weights.h5 + DIR/config.yaml.

The output is an ordinary training-run folder: ``val``, ``predict``, ``export`` and ``train --init-weights``
use it as it is. Nothing is written unless the import reproduces the source (see importers.convert).
"""

from __future__ import annotations

import logging
from pathlib import Path

from squeezedet.errors import ConfigError

log = logging.getLogger(__name__)

#: Images the fidelity check runs on by default (real KITTI frames bundled with the repository).
DEFAULT_CHECK_IMAGES = Path(__file__).resolve().parents[2] / "assets" / "kitti_sample" / "training" / "image_2"


def register(sub) -> None:
    p = sub.add_parser(
        "import",
        help="import published SqueezeDet weights (TF1 graph/checkpoint, raw float32) as Keras weights + config",
        description="Read the SqueezeDet authors' weights with their geometry, build our Keras model with it, "
        "check that it reproduces the source on real images, then write DIR/model.weights.h5, DIR/config.yaml "
        "and DIR/import_report.json.",
    )
    p.add_argument("source", metavar="SOURCE", help="frozen .pb, checkpoint prefix/folder, or folder of <layer>_W.bin")
    p.add_argument("--output", required=True, help="folder to write (created)")
    p.add_argument("--format", default="auto", choices=("auto", "tf1-graph", "tf1-checkpoint", "raw-float32"))
    p.add_argument("--classes", nargs="+", help="class names in the source's order (default: car pedestrian cyclist)")
    p.add_argument("--config", help="base config (postprocess, data, train settings; geometry for sources "
                   "that store none)")
    p.add_argument("--like", help="a TF1 graph whose geometry (input size, padding, anchors) the source shares, "
                   "e.g. the 8-bit graph of the same float weights")
    p.add_argument("--input-size", help="WxH, for sources that store no input size (e.g. 960x288)")
    p.add_argument("--padding", choices=("same", "valid"), help="conv1/pool padding, for sources that store none")
    p.add_argument("--check-images", default=str(DEFAULT_CHECK_IMAGES),
                   help="folder of images for the fidelity check (default: the bundled KITTI sample)")
    p.add_argument("--check-count", type=int, default=3, help="images in the fidelity check (default 3)")
    p.set_defaults(func=run)


def _input_size(text: str | None) -> tuple[int | None, int | None]:
    if not text:
        return None, None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--input-size: expected WxH such as 960x288, got {text!r}") from None
    return w, h


def run(args) -> int:
    from squeezedet.config import Config, load_config
    from squeezedet.core.preprocess import read_image_rgb
    from squeezedet.export.calibration import list_images
    from squeezedet.importers import import_model, read_source
    from squeezedet.importers.layout import KITTI_CLASSES

    base = load_config(args.config) if args.config else Config()
    width, height = _input_size(args.input_size)
    if args.check_count < 1:
        raise ConfigError("--check-count: the fidelity check needs at least 1 image")
    images = [read_image_rgb(p) for p in list_images(args.check_images, None, "--check-images")[: args.check_count]]
    source = read_source(args.source, args.format)
    if args.like:
        source.inherit(read_source(args.like, "tf1-graph"))
    elif "input_width" not in source.geometry and not args.config and not width:
        raise ConfigError(f"{source.path}: a {source.format} stores no input size or padding: pass --like GRAPH, "
                          "--config, or --input-size WxH with --padding")
    classes = args.classes or (None if args.config else KITTI_CLASSES)
    overrides = {"input_width": width, "input_height": height, "padding": args.padding, "classes": classes}
    log.info("importing %s (%s%s)", source.path, source.format, ", 8-bit weights" if source.quantized else "")
    result = import_model(source, args.output, base, overrides, images)
    m = result.config.model
    print(f"imported {source.path} -> {result.output}: {m.input_width}x{m.input_height} {m.padding} padding, "
          f"grid {m.grid_size[0]}x{m.grid_size[1]}x{m.num_anchors}, {m.convdet_kernel}x{m.convdet_kernel} ConvDet, "
          f"classes {','.join(m.classes)}; max |raw deviation| {result.report['max_abs_dev_reference']:.2e}"
          + (f" (vs the source graph {result.report['max_abs_dev_source']:.2e}, correlation "
             f"{result.report['correlation_source']:.4f})" if "max_abs_dev_source" in result.report
             else f"; not compared with the source ({source.format} cannot be run; --like GRAPH compares)"))
    return 0
