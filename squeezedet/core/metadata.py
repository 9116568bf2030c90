"""Self-describing model files: a sidecar JSON next to each exported model, bound to it by a SHA-256.

``model.tflite`` / ``model.onnx`` / ``model.xml`` (OpenVINO IR, weights in ``model.bin``) -> ``model.json``.
The daemon needs nothing else to run a model: class names, input size, anchor shapes and decode
defaults all live here. A sidecar whose hash does not match its model file (and, for OpenVINO IR, its
``.bin``) is rejected, so a half-copied or swapped model never runs with the wrong classes.
Sidecars of the first format (``squeezedet-tflite/1``, hash in ``tflite_sha256``) still read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from squeezedet.core.anchors import anchor_grid, grid_size
from squeezedet.core.io import atomic_write_json
from squeezedet.errors import ModelFileError

FORMAT = "squeezedet-model/2"
#: Older sidecar formats that still load (their hash key is renamed on read).
LEGACY_FORMATS = {"squeezedet-tflite/1": "tflite_sha256"}
#: Model file suffix -> model_format.
MODEL_FORMATS = {".tflite": "tflite", ".onnx": "onnx", ".xml": "openvino"}


@dataclass
class ModelMetadata:
    class_names: list[str]
    input_width: int
    input_height: int
    anchor_shapes: list[list[float]]
    score_threshold: float = 0.3
    nms_threshold: float = 0.4
    top_k: int = 64
    max_detections: int = 100
    model_id: str = ""
    architecture: str = "squeezedet"
    quantization: str = "fp32"
    input_dtype: str = "uint8"
    output: str = "raw_convdet"  # [1, gh, gw, A*(C+5)] float32, see squeezedet.core.postprocess
    config_hash: str = ""
    model_format: str = "tflite"  # tflite | onnx | openvino (see MODEL_FORMATS)
    model_sha256: str = ""
    weights_sha256: str = ""  # OpenVINO IR only: the .bin beside the .xml
    format: str = FORMAT
    #: Geometry the weights were trained at (see squeezedet.config.ModelConfig). grid 0x0 = the
    #: SAME-padded grid of the input size (sidecars written before these fields existed).
    padding: str = "same"
    convdet_kernel: int = 3
    grid_width: int = 0
    grid_height: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.input_width, self.input_height)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def tflite_sha256(self) -> str:
        """The model file's hash under its first-format name."""
        return self.model_sha256

    @property
    def grid_size(self) -> tuple[int, int]:
        """(grid_width, grid_height) of the raw output tensor."""
        if self.grid_width and self.grid_height:
            return (self.grid_width, self.grid_height)
        return self.expected_grid()

    def expected_grid(self) -> tuple[int, int]:
        """The grid the input size and padding give (conv1 is 7x7 in SqueezeDet+)."""
        conv1 = 7 if self.architecture == "squeezedet_plus" else 3
        return grid_size(self.input_width, self.input_height, self.padding, conv1)

    def anchors(self) -> np.ndarray:
        return anchor_grid(self.input_width, self.input_height, self.anchor_shapes, self.grid_size)


def sidecar_path(model_path) -> Path:
    return Path(model_path).with_suffix(".json")


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_path(model_path) -> Path | None:
    """The file holding an OpenVINO IR's weights (``model.bin``), None for single-file formats."""
    return Path(model_path).with_suffix(".bin") if Path(model_path).suffix == ".xml" else None


def write_metadata(model_path, meta: ModelMetadata) -> Path:
    """Write the sidecar for an existing model file, stamping its format and hash(es)."""
    meta.model_format = MODEL_FORMATS.get(Path(model_path).suffix, meta.model_format)
    meta.model_sha256 = file_sha256(model_path)
    bin_path = weights_path(model_path)
    meta.weights_sha256 = file_sha256(bin_path) if bin_path is not None and bin_path.is_file() else ""
    return atomic_write_json(sidecar_path(model_path), asdict(meta))


def _check_fields(meta: ModelMetadata, side: Path) -> None:
    """Types and shapes the decoder relies on: a bad sidecar is a ModelFileError, never a traceback."""
    def bad(key, why):
        raise ModelFileError(f"{side}: {key}: {why}")

    if not (isinstance(meta.class_names, list) and meta.class_names
            and all(isinstance(c, str) and c for c in meta.class_names)):
        bad("class_names", "must be a non-empty list of names")
    for key in ("input_width", "input_height", "top_k", "max_detections"):
        value = getattr(meta, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            bad(key, f"must be a positive integer, got {value!r}")
    for key in ("grid_width", "grid_height"):
        value = getattr(meta, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            bad(key, f"must be a non-negative integer, got {value!r}")
    if meta.padding not in ("same", "valid"):
        bad("padding", f"must be 'same' or 'valid', got {meta.padding!r}")
    if bool(meta.grid_width) != bool(meta.grid_height):
        bad("grid_width", "grid_width and grid_height are given together or not at all")
    try:
        expected = meta.expected_grid()
    except ValueError as exc:
        bad("input_width", str(exc))
    if meta.grid_width and (meta.grid_width, meta.grid_height) != expected:
        bad("grid_width", f"grid {meta.grid_width}x{meta.grid_height} does not follow from input "
                          f"{meta.input_width}x{meta.input_height} with {meta.padding} padding ({expected[0]}x{expected[1]})")
    shapes = np.asarray(meta.anchor_shapes, dtype=object)
    if shapes.ndim != 2 or shapes.shape[1] != 2 or not len(shapes) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in shapes.ravel()
    ):
        bad("anchor_shapes", "must be a non-empty list of [width, height] pairs > 0")
    for key in ("score_threshold", "nms_threshold"):
        value = getattr(meta, key)
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            bad(key, f"must be a number in [0, 1], got {value!r}")


def read_metadata(model_path, verify_hash: bool = True) -> ModelMetadata:
    """Load and check the sidecar of a model file; every problem is a one-line ModelFileError."""
    model_path = Path(model_path)
    side = sidecar_path(model_path)
    if not side.is_file():
        raise ModelFileError(f"{side}: metadata file not found (expected next to {model_path.name})")
    try:
        raw = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{side}: not valid JSON ({exc})") from None
    fmt = raw.get("format") if isinstance(raw, dict) else None
    if fmt not in (FORMAT, *LEGACY_FORMATS):
        raise ModelFileError(f"{side}: not a {FORMAT} metadata file (format={fmt!r})")
    hash_key = LEGACY_FORMATS.get(fmt, "model_sha256")
    if fmt != FORMAT:
        raw = dict(raw)
        raw.update(format=FORMAT, model_sha256=raw.pop(hash_key, ""))
    known = set(ModelMetadata.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ModelFileError(f"{side}: unknown key(s) {', '.join(unknown)}")
    try:
        meta = ModelMetadata(**raw)
    except TypeError as exc:
        raise ModelFileError(f"{side}: {exc}") from None
    _check_fields(meta, side)
    if verify_hash and model_path.is_file():
        if meta.model_sha256 and file_sha256(model_path) != meta.model_sha256:
            raise ModelFileError(f"{side}: {hash_key} does not match {model_path.name} (model and metadata out of sync)")
        bin_path = weights_path(model_path)
        if meta.weights_sha256 and bin_path is not None and (
                not bin_path.is_file() or file_sha256(bin_path) != meta.weights_sha256):
            raise ModelFileError(f"{side}: weights_sha256 does not match {bin_path.name} (model and metadata out of sync)")
    return meta
