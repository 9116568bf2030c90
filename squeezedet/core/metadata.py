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
from pathlib import Path
from typing import Annotated

from pydantic import ConfigDict, Field, ValidationError, model_validator

from squeezedet.core.geometry import DecodeDefaults, ModelGeometry
from squeezedet.core.io import atomic_write_json
from squeezedet.errors import ModelFileError

FORMAT = "squeezedet-model/2"
#: Older sidecar formats that still load (their hash key is renamed on read).
LEGACY_FORMATS = {"squeezedet-tflite/1": "tflite_sha256"}
#: Model file suffix -> model_format.
MODEL_FORMATS = {".tflite": "tflite", ".onnx": "onnx", ".xml": "openvino"}
#: What a sidecar key must hold, quoted in the one-line error when its value is refused.
RULES = {
    "class_names": "must be a non-empty list of names",
    "anchor_shapes": "must be a non-empty list of [width, height] pairs > 0",
    "padding": "must be 'same' or 'valid'",
    **dict.fromkeys(("input_width", "input_height", "top_k", "max_detections"), "must be a positive integer"),
    **dict.fromkeys(("grid_width", "grid_height"), "must be a non-negative integer"),
    **dict.fromkeys(("score_threshold", "nms_threshold"), "must be a number in [0, 1]"),
}


class ModelMetadata(DecodeDefaults, ModelGeometry):
    """The sidecar: the geometry and decode defaults the model was trained with (one definition with the
    training config, squeezedet.core.geometry) plus what names and binds the file."""

    model_config = ConfigDict(validate_assignment=True)

    class_names: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    model_id: str = ""
    quantization: str = "fp32"
    input_dtype: str = "uint8"
    output: str = "raw_convdet"  # [1, gh, gw, A*(C+5)] float32, see squeezedet.core.postprocess
    config_hash: str = ""
    model_format: str = "tflite"  # tflite | onnx | openvino (see MODEL_FORMATS)
    model_sha256: str = ""
    weights_sha256: str = ""  # OpenVINO IR only: the .bin beside the .xml
    format: str = FORMAT
    #: grid 0x0 = the grid the input size and padding give (sidecars written before these fields existed).
    grid_width: int = Field(0, ge=0)
    grid_height: int = Field(0, ge=0)
    extra: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _grid_fits(self):
        """The geometry's check of the same name, plus the stored grid; each message names its key."""
        try:
            expected = self.expected_grid()
        except ValueError as exc:
            raise ValueError(f"input_width: {exc}") from None
        if bool(self.grid_width) != bool(self.grid_height):
            raise ValueError("grid_width: grid_width and grid_height are given together or not at all")
        if self.grid_width and (self.grid_width, self.grid_height) != expected:
            raise ValueError(f"grid_width: grid {self.grid_width}x{self.grid_height} does not follow from input "
                             f"{self.input_width}x{self.input_height} with {self.padding} padding "
                             f"({expected[0]}x{expected[1]})")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def tflite_sha256(self) -> str:
        """The model file's hash under its first-format name."""
        return self.model_sha256

    @property
    def grid_size(self) -> tuple[int, int]:
        """(grid_width, grid_height) of the raw output tensor: as stored, else as the geometry gives it."""
        if self.grid_width and self.grid_height:
            return (self.grid_width, self.grid_height)
        return self.expected_grid()


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
    return atomic_write_json(sidecar_path(model_path), meta.model_dump())


def _refused(exc: ValidationError, raw: dict, side: Path) -> ModelFileError:
    """pydantic's first complaint about a sidecar as one line naming the key (and its rule, if it has one)."""
    error = exc.errors()[0]
    key = error["loc"][0] if error["loc"] else None
    if key is None:  # a check over several keys: its message starts with the key at fault
        return ModelFileError(f"{side}: {error['msg'].removeprefix('Value error, ')}")
    if error["type"] == "missing":
        return ModelFileError(f"{side}: {key}: missing")
    why = f"{RULES[key]}, got {raw[key]!r}" if key in RULES else error["msg"]
    return ModelFileError(f"{side}: {key}: {why}")


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
    unknown = sorted(set(raw) - set(ModelMetadata.model_fields))
    if unknown:
        raise ModelFileError(f"{side}: unknown key(s) {', '.join(unknown)}")
    try:  # strict: JSON types as written ("64" is not a size), as every exporter writes them
        meta = ModelMetadata.model_validate(raw, strict=True)
    except ValidationError as exc:
        raise _refused(exc, raw, side) from None
    if verify_hash and model_path.is_file():
        if meta.model_sha256 and file_sha256(model_path) != meta.model_sha256:
            raise ModelFileError(f"{side}: {hash_key} does not match {model_path.name} (model and metadata out of sync)")
        bin_path = weights_path(model_path)
        if meta.weights_sha256 and bin_path is not None and (
                not bin_path.is_file() or file_sha256(bin_path) != meta.weights_sha256):
            raise ModelFileError(f"{side}: weights_sha256 does not match {bin_path.name} (model and metadata out of sync)")
    return meta
