"""Keras weights -> an exported model in any format, with one contract and one set of checks.

Every format (:data:`FORMATS`) gets the same graph (:func:`squeezedet.export.graph.export_graph`:
uint8 RGB ``[1, H, W, 3]`` in with normalisation inside, raw ConvDet float32 out; for int8 the
per-channel head scaling), int8 calibrated on the same real images preprocessed as at inference,
the same sidecar (class names, geometry, anchors, decode defaults, SHA-256 of the file) and the same
equivalence check against Keras, run through the back end that will run the file.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import NamedTuple

from squeezedet.config import Config
from squeezedet.core.geometry import ModelGeometry
from squeezedet.core.metadata import ModelMetadata, write_metadata
from squeezedet.core.preprocess import read_image_rgb
from squeezedet.errors import ConfigError, DataError, ModelFileError, SqueezeDetError, first_line
from squeezedet.export import calibration

log = logging.getLogger(__name__)


class Format(NamedTuple):
    """One export format: the module that writes it and what it accepts."""

    module: str  #: the writer, imported only when its format is exported
    writer: str  #: its ``write(graph, output, quantize, calib_paths, input_size)``
    suffix: str
    quantizations: tuple[str, ...]
    label: str  #: the format's name in messages


#: format -> its writer and what it accepts; the writers import their converters (TensorFlow, tf2onnx,
#: openvino, nncf) on demand, so this table costs nothing to read.
FORMATS: dict[str, Format] = {
    "tflite": Format("squeezedet.export.tflite", "write_tflite", ".tflite", ("fp32", "fp16", "int8"), "TFLite"),
    "onnx": Format("squeezedet.export.onnx", "write_onnx", ".onnx", ("fp32", "int8"), "ONNX"),
    "openvino": Format("squeezedet.export.openvino", "write_openvino", ".xml", ("fp32", "fp16", "int8"), "OpenVINO"),
}
QUANTIZATIONS = ("fp32", "fp16", "int8")


def _writer(fmt: str):
    """The format's write function, its module imported now."""
    return getattr(importlib.import_module(FORMATS[fmt].module), FORMATS[fmt].writer)


def check_request(fmt: str, quantize: str, output: Path) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r} (supported: {', '.join(FORMATS)})")
    _, _, suffix, quants, label = FORMATS[fmt]
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"unknown quantization {quantize!r} (choose from {', '.join(QUANTIZATIONS)})")
    if quantize not in quants:
        raise ConfigError(f"{label} export supports {', '.join(quants)}, not {quantize}")
    if output.suffix != suffix:
        extra = " (the weights go beside it as .bin)" if fmt == "openvino" else ""
        raise ConfigError(f"{output}: {label} output must end in {suffix}{extra}; the metadata goes next to it as .json")


def export_model(
    cfg: Config,
    weights_path,
    output,
    fmt: str = "tflite",
    quantize: str = "int8",
    calib_root=None,
    calib_images: int = 300,
    calib_split: str | None = "train",
    check_root=None,
    check_split: str | None = None,
    check_images: int = 4,
    seed: int = 0,
) -> Path:
    """Export ``weights_path`` to ``output`` (+ sidecar .json, + export_report.json when checked).

    int8 calibrates on ``calib_images`` images of ``calib_root`` (default cfg.data.root), split
    ``calib_split``. The equivalence check then runs ``check_images`` images not used for calibration
    (``check_root``/``check_split``, default the config's val split) through Keras and the exported file.
    """
    from squeezedet.export.equivalence import compare_keras_model, write_report
    from squeezedet.export.graph import export_graph, head_ranges, load_inference_model

    output = Path(output)
    check_request(fmt, quantize, output)
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise ModelFileError(f"{weights_path}: weights file not found")
    calib_root = calib_root or cfg.data.root
    calib_paths: list[Path] = []
    if quantize == "int8":
        if not calib_root:
            raise DataError("int8 needs calibration images: pass --calib-data DIR or set data.root in the config")
        calib_paths = calibration.calibration_paths(calib_root, calib_split, calib_images, seed)
    check_paths = _check_paths(cfg, check_root, check_split, check_images, set(calib_paths), calib_root)
    write = _writer(fmt)
    model = load_inference_model(cfg.model, weights_path)
    ranges = None
    if quantize == "int8":
        log.info("calibrating on %d images of %s", len(calib_paths), calib_root)
        ranges = head_ranges(model, calibration.load_frames(calib_paths, cfg.model.input_size), cfg.model)
    graph = export_graph(model, cfg.model, ranges)
    label = FORMATS[fmt].label
    try:
        write(graph, output, quantize, calib_paths, cfg.model.input_size)
    except SqueezeDetError:
        raise
    except Exception as exc:  # noqa: BLE001 - converters raise ConverterError, ValueError, RuntimeError...
        raise ModelFileError(f"{weights_path}: the {label} converter rejected the model ({quantize}): "
                             f"{first_line(exc)}") from None
    write_metadata(output, _metadata(cfg, quantize, weights_path, len(calib_paths), ranges))
    log.info("wrote %s (%s %s, %.2f MB) and its metadata", output, label, quantize, model_bytes(output) / 1e6)
    if check_paths:
        report = compare_keras_model(model, output, [read_image_rgb(p) for p in check_paths], cfg)
        report["images"] = [str(p) for p in check_paths]
        write_report(output, report)
    return output


def export_tflite(cfg: Config, weights_path, output, quantize: str = "int8", **kwargs) -> Path:
    """Export to .tflite (the first format's shorthand); see :func:`export_model` for the arguments."""
    return export_model(cfg, weights_path, output, "tflite", quantize, **kwargs)


def model_bytes(path) -> int:
    """Size on disk of an exported model, with an OpenVINO IR's .bin."""
    from squeezedet.core.metadata import weights_path

    path = Path(path)
    extra = weights_path(path)
    return path.stat().st_size + (extra.stat().st_size if extra is not None and extra.is_file() else 0)


def model_id(cfg: Config, quantize: str) -> str:
    return f"{cfg.model.architecture}-{quantize}-{cfg.hash()[:8]}"


def _metadata(cfg: Config, quantize: str, weights_path: Path, calib_count: int, ranges) -> ModelMetadata:
    extra = {"weights": weights_path.name, "calibration_images": calib_count}
    if ranges is not None:
        extra["output_ranges"] = [round(float(r), 6) for r in ranges]
    return ModelMetadata(
        **cfg.model.model_dump(include=set(ModelGeometry.model_fields)),
        **cfg.postprocess.model_dump(),
        class_names=list(cfg.model.classes),
        model_id=model_id(cfg, quantize),
        quantization=quantize,
        config_hash=cfg.hash(),
        grid_width=cfg.model.grid_size[0],
        grid_height=cfg.model.grid_size[1],
        extra=extra,
    )


def _check_paths(cfg: Config, root, split, count: int, exclude: set, calib_root) -> list[Path]:
    """Images for the equivalence check, none of them calibration images. Asked for explicitly
    (``root``) they must exist; by default the config's val split is used if it is there."""
    explicit = root is not None
    root = root or calib_root or cfg.data.root
    if count <= 0 or not root:
        if count > 0:
            log.warning("equivalence check skipped: no images (pass --check-data DIR or set data.root)")
        return []
    split = split if explicit else (split or cfg.data.val_split)
    try:
        paths = [p for p in calibration.list_images(root, split, "check data folder") if p not in exclude]
        if not paths:
            raise DataError(f"{root}: every image was used for calibration, none left for the equivalence check")
    except DataError as exc:
        if explicit:
            raise
        log.warning("equivalence check skipped: %s", exc)
        return []
    return paths[:count]
