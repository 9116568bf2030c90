"""Source weights -> our Keras SqueezeDet + config, checked against the source before anything is written.

The fidelity check runs on real images: the Keras model against the independent ``tf.nn`` reference with
the same float weights (always), and against the source graph itself where it is executable. Float sources
must agree within ``FLOAT_TOLERANCE``; an 8-bit graph's own run quantizes every activation, so it is held
to its dequantized float run (the reference) within the same tolerance, and to its real 8-bit run by
correlation (every activation there is rounded to 256 levels).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from squeezedet.config import Config, format_validation_error, save_config
from squeezedet.core.io import atomic_path, atomic_write_json
from squeezedet.core.metadata import file_sha256
from squeezedet.core.preprocess import resize_for_model
from squeezedet.errors import ModelFileError
from squeezedet.importers.base import SourceWeights
from squeezedet.importers.layout import ORIGINAL_LAYERS, keras_name
from squeezedet.importers.reference import reference_forward
from squeezedet.model.layers import BGR_MEANS

log = logging.getLogger(__name__)

FLOAT_TOLERANCE = 1e-3  #: max |raw deviation| between float sources and the import
#: An 8-bit graph requantizes every activation to 256 levels, so single values move by several units
#: (measured on KITTI: max 9-13, mean 0.5-0.6 on a range of 37-49); the same network still correlates
#: above 0.97 with its float import, a mis-mapped one near 0.
QUANTIZED_MIN_CORRELATION = 0.95
WEIGHTS_FILE = "model.weights.h5"
CONFIG_FILE = "config.yaml"
REPORT_FILE = "import_report.json"


@dataclass
class ImportResult:
    output: Path
    config: Config
    report: dict = field(default_factory=dict)


#: (config section, key, value) of the training targets of the original SqueezeDet code.
AUTHORS_TARGETS = (
    ("data", "box_size", "inclusive"),
    ("data", "exclude_hard_examples", True),
    ("train", "loss_reference_batch", 20),
)


def resolve_config(source: SourceWeights, base: Config, overrides: dict) -> Config:
    """The base config (defaults or --config) with what the source states, then explicit flags, on top."""
    stated = {k: v for k, v in source.geometry.items() if k != "anchors"}
    model = base.model.model_dump()
    model.update(stated)
    model.update({k: v for k, v in overrides.items() if v is not None})
    changed = [k for k, v in stated.items() if k in base.model.model_fields_set and getattr(base.model, k) != v]
    if changed:
        log.info("the source's own geometry replaces the config's: %s",
                 ", ".join(f"{k} {getattr(base.model, k)} -> {stated[k]}" for k in changed if k != "anchor_shapes")
                 or "anchor_shapes")
    if "anchor_shapes" not in source.geometry:
        # a checkpoint or raw set stores no anchors: the config's are used as written (the original used its
        # shapes unscaled at 1242x375 and 1248x384, its mobile variant scaled them: no rule fits every source)
        log.info("anchors from the config (the source stores none): %s",
                 ", ".join(f"{w:g}x{h:g}" for w, h in model["anchor_shapes"]))
    model["architecture"], model["pretrained_backbone"] = "squeezedet", None
    data = base.model_dump()
    data["model"] = model
    # The original code trained every published model on these targets; fine-tuning must use the same
    # (README "Adapt the KITTI model"), unless the base config says otherwise.
    for section, key, value in AUTHORS_TARGETS:
        if key not in getattr(base, section).model_fields_set:
            data[section][key] = value
    data["data"]["class_map"] = {k: v for k, v in base.data.class_map.items() if v in model["classes"]}
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:  # one line naming the key
        raise ModelFileError(format_validation_error(exc, f"{source.path} (import)")) from None
    _check_head(source, cfg)
    if "anchors" in source.geometry:
        _check_anchors(source, cfg)
    return cfg


def _check_head(source: SourceWeights, cfg: Config) -> None:
    out = source.params["conv12"][0].shape[-1]
    want = cfg.model.num_anchors * (len(cfg.model.classes) + 5)
    if out != want:
        c = out / cfg.model.num_anchors - 5
        hint = f" (the source has {c:g} classes)" if c == int(c) and c > 0 else ""
        raise ModelFileError(f"{source.path}: conv12 has {out} outputs, {cfg.model.num_anchors} anchors x "
                             f"({len(cfg.model.classes)} classes + 5) = {want} expected{hint}; pass --classes")
    k = source.params["conv12"][0].shape[0]
    if k != cfg.model.convdet_kernel:
        raise ModelFileError(f"{source.path}: conv12 is {k}x{k}, config says convdet_kernel {cfg.model.convdet_kernel}")


def _check_anchors(source: SourceWeights, cfg: Config) -> None:
    """The graph's baked-in anchors must be exactly the grid our decoder will build from the config."""
    theirs, ours = source.geometry["anchors"], cfg.model.anchors()
    if theirs.shape != ours.shape:
        raise ModelFileError(f"{source.path}: the graph has {len(theirs)} anchors, the geometry "
                             f"{cfg.model.input_width}x{cfg.model.input_height} {cfg.model.padding} gives {len(ours)}")
    worst = float(np.max(np.abs(theirs - ours)))
    if worst > 1e-2:
        raise ModelFileError(f"{source.path}: the graph's anchor centres/shapes differ from the config's grid by "
                             f"up to {worst:.3f} px")


def build_keras(source: SourceWeights, cfg: Config):
    from squeezedet.model import build_model

    model = build_model(cfg.model, training_dropout=False)
    for name in ORIGINAL_LAYERS:
        layer = model.get_layer(keras_name(name))
        kernel, bias = source.params[name]
        if tuple(layer.kernel.shape) != kernel.shape:
            raise ModelFileError(f"{source.path}: {name}/kernels has shape {kernel.shape}, "
                                 f"the model expects {tuple(layer.kernel.shape)}")
        layer.set_weights([kernel, bias])
    return model


def to_bgr(images_rgb: np.ndarray) -> np.ndarray:
    """The original's input convention: BGR float minus the ImageNet means."""
    return images_rgb[..., ::-1].astype(np.float32) - np.asarray(BGR_MEANS, np.float32)


def fidelity(source: SourceWeights, cfg: Config, model, images_rgb: list[np.ndarray]) -> dict:
    import keras

    batch = np.stack([resize_for_model(im, cfg.model.input_size) for im in images_rgb])
    ours = np.concatenate([keras.ops.convert_to_numpy(model(batch[i:i + 1], training=False))
                           for i in range(len(batch))])
    bgr = to_bgr(batch)
    ref = reference_forward(source.params, cfg.model.padding, bgr)
    report = {"images": len(batch), "output_shape": list(ours.shape[1:]),
              "max_abs_dev_reference": float(np.max(np.abs(ours - ref)))}
    if source.run is None:
        report["source_check"] = (f"none: a {source.format} cannot be run, so only the weight mapping is checked "
                                  "(give --like GRAPH to compare with a graph of the same model)")
    else:
        theirs = source.run(bgr)
        if theirs.shape != ours.shape:
            raise ModelFileError(f"{source.path}: the source outputs {list(theirs.shape[1:])}, the import "
                                 f"{list(ours.shape[1:])}: geometry mismatch (check --input-size/--padding)")
        dev = float(np.max(np.abs(ours - theirs)))
        report["max_abs_dev_source"] = dev
        report["mean_abs_dev_source"] = float(np.mean(np.abs(ours - theirs)))
        report["source_output_range"] = float(np.ptp(theirs))
        report["correlation_source"] = float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1])
    return report


def check_fidelity(source: SourceWeights, report: dict) -> None:
    if report["max_abs_dev_reference"] > FLOAT_TOLERANCE:
        raise ModelFileError(f"{source.path}: import differs from the reference forward pass by "
                             f"{report['max_abs_dev_reference']:.3g} (> {FLOAT_TOLERANCE}); nothing written")
    if "max_abs_dev_source" not in report:
        return
    if not source.run_8bit and report["max_abs_dev_source"] > FLOAT_TOLERANCE:
        raise ModelFileError(f"{source.path}: import differs from the source graph by "
                             f"{report['max_abs_dev_source']:.3g} (> {FLOAT_TOLERANCE}); nothing written")
    if source.run_8bit and not report["correlation_source"] >= QUANTIZED_MIN_CORRELATION:
        raise ModelFileError(f"{source.path}: import correlates {report['correlation_source']:.3f} with the 8-bit "
                             f"graph's output (< {QUANTIZED_MIN_CORRELATION}); nothing written")


def import_model(source: SourceWeights, output, base: Config, overrides: dict,
                 images_rgb: list[np.ndarray]) -> ImportResult:
    """Build, check on ``images_rgb`` (at least one), then write weights, config and report atomically."""
    if not images_rgb:
        raise ModelFileError("the fidelity check needs at least one image (pass --check-images)")
    if Path(output).exists() and not Path(output).is_dir():
        raise ModelFileError(f"{output}: --output must be a folder, this is a file")
    cfg = resolve_config(source, base, overrides)
    model = build_keras(source, cfg)
    report = fidelity(source, cfg, model, images_rgb)
    log.info("fidelity on %d image(s): max |dev| vs reference %.2e%s", report["images"],
             report["max_abs_dev_reference"],
             f", vs source {report['max_abs_dev_source']:.2e} (correlation {report['correlation_source']:.4f})"
             if "max_abs_dev_source" in report else "")
    check_fidelity(source, report)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(output / WEIGHTS_FILE, suffix=".weights.h5") as tmp:
        model.save_weights(str(tmp))
    save_config(cfg, output / CONFIG_FILE)
    sha = file_sha256(source.path) if source.path.is_file() else None
    report.update({
        "source": str(source.path), "format": source.format, "quantized_weights": source.quantized,
        "source_sha256": sha, "geometry": {
            "input": [cfg.model.input_width, cfg.model.input_height], "padding": cfg.model.padding,
            "convdet_kernel": cfg.model.convdet_kernel, "grid": list(cfg.model.grid_size),
            "anchors_per_cell": cfg.model.num_anchors}, "classes": list(cfg.model.classes),
        "tolerance": {"max_abs_dev": FLOAT_TOLERANCE, "min_correlation_8bit": QUANTIZED_MIN_CORRELATION},
    })
    atomic_write_json(output / REPORT_FILE, json.loads(json.dumps(report)))
    return ImportResult(output, cfg, report)
