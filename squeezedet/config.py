"""Training/eval/export configuration: one YAML file, validated by pydantic.

Unknown keys are rejected and every error names the file and the dotted key path, e.g.
``configs/x.yaml: train.learning_rate: Input should be greater than 0``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from squeezedet.core.anchors import DEFAULT_KITTI_ANCHOR_SHAPES
from squeezedet.core.geometry import AnchorShape, DecodeDefaults, ModelGeometry
from squeezedet.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict, ModelGeometry):
    """The geometry (squeezedet.core.geometry, shared with exported models' sidecars) with the paper's
    KITTI defaults and a 32-pixel floor, plus what only training needs."""

    input_width: int = Field(1248, ge=32)
    input_height: int = Field(384, ge=32)
    classes: list[str] = Field(default_factory=lambda: ["car", "pedestrian", "cyclist"], min_length=1)
    #: (w, h) in input pixels; the defaults are the paper's for 1248x384.
    anchor_shapes: list[AnchorShape] = Field(
        default_factory=lambda: [list(a) for a in DEFAULT_KITTI_ANCHOR_SHAPES], min_length=1
    )
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    #: Local ImageNet SqueezeNet v1.1 weights (.h5) for conv1..fire9; never downloaded.
    pretrained_backbone: str | None = None

    @field_validator("classes")
    @classmethod
    def _unique(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("class names must be unique")
        return v


class DataConfig(_Strict):
    root: str | None = None  #: KITTI folder with training/image_2, training/label_2 (or image_2/label_2)
    train_split: str = "train.txt"
    val_split: str = "val.txt"
    #: KITTI type -> our class name; types not listed are not trained on (DontCare is kept for eval).
    class_map: dict[str, str] = Field(
        default_factory=lambda: {"Car": "car", "Pedestrian": "pedestrian", "Cyclist": "cyclist"}
    )
    cache: bool | str = True  #: True = in memory, a path = on disk, False = none
    shuffle_buffer: int = Field(512, ge=1)
    #: Leave out of the training targets the objects KITTI rates harder than "hard" (level 4: under 25 px
    #: tall, truncated over 0.5 or occluded over 2), as the original's EXCLUDE_HARD_EXAMPLES. Its
    #: from-ImageNet KITTI recipe keeps them (False, the default here); its published weights behave as
    #: trained without them, so fine-tuning those weights sets True (kitti_reference_small.yaml; README
    #: "Fine-tuning" has the measurement). Evaluation always keeps every object, as the devkit does.
    exclude_hard_examples: bool = False
    #: How a box's width and height are measured for the training targets: "inclusive" counts both edge
    #: pixels (x2 - x1 + 1, in the training image's pixels), as the original code did for every published
    #: SqueezeDet model; "exclusive" is x2 - x1. Weights trained one way regress a 1-pixel-larger or
    #: -smaller box under the other, so keep what the weights were trained with. The default keeps what
    #: configs written before this key meant; the bundled training configs and every import say inclusive.
    box_size: Literal["inclusive", "exclusive"] = "exclusive"


class AugmentConfig(_Strict):
    """Mobile-camera augmentation; probabilities are per image."""

    enabled: bool = True
    drift_scale: tuple[float, float] = (0.85, 1.15)  #: random zoom (crop/pad) of the frame
    drift_translate: float = Field(0.1, ge=0.0, le=0.5)  #: max shift as a fraction of the size
    drift_p: float = Field(0.7, ge=0, le=1)
    #: Random crop to this width/height ratio (e.g. 1.78 for a 16:9 camera) before resizing, with
    #: probability aspect_crop_p: teaches undistorted objects to a model whose input aspect differs
    #: from the training frames' (KITTI is 3.3:1). None = off.
    aspect_crop: float | None = Field(None, gt=0)
    aspect_crop_p: float = Field(0.5, ge=0, le=1)
    min_visibility: float = Field(0.3, ge=0, le=1)  #: boxes cut below this visible fraction are dropped
    hflip_p: float = Field(0.5, ge=0, le=1)
    motion_blur_p: float = Field(0.15, ge=0, le=1)
    defocus_p: float = Field(0.1, ge=0, le=1)
    jpeg_p: float = Field(0.3, ge=0, le=1)
    jpeg_quality: tuple[int, int] = (40, 95)
    low_light_p: float = Field(0.2, ge=0, le=1)
    gamma_limit: tuple[int, int] = (80, 150)
    noise_p: float = Field(0.2, ge=0, le=1)
    noise_std: tuple[float, float] = (0.01, 0.05)  #: fraction of the pixel range
    color_jitter_p: float = Field(0.4, ge=0, le=1)


class TrainConfig(_Strict):
    batch_size: int = Field(20, ge=1)
    epochs: int = Field(100, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)  #: None = one pass over the split
    learning_rate: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    warmup_steps: int = Field(500, ge=0)
    lr_decay: Literal["cosine", "step", "none"] = "cosine"
    lr_decay_steps: int = Field(10000, ge=1)  #: for "step": multiply by lr_decay_factor every N steps
    lr_decay_factor: float = Field(0.5, gt=0, le=1)
    weight_decay: float = Field(1e-4, ge=0)
    clip_norm: float = Field(2.5, gt=0)
    mixed_precision: Literal["auto", "on", "off"] = "auto"  #: auto = on when a GPU is present
    val_every: int = Field(1, ge=0)  #: epochs between validation passes (0 = never)
    seed: int = 0
    loss_coef_class: float = Field(1.0, ge=0)
    loss_coef_conf_pos: float = Field(75.0, ge=0)
    loss_coef_conf_neg: float = Field(100.0, ge=0)
    loss_coef_bbox: float = Field(5.0, ge=0)
    #: The original averages its per-object confidence term over the batch once more, so that term's weight
    #: against the others is 1 / batch size; its coefficients were tuned at batch 20. Set, the loss keeps the
    #: weight of this batch size whatever train.batch_size is (fine-tuning at batch 4 otherwise weighs
    #: positive confidences 5x). null (the default, what configs before this key meant) = the batch in use,
    #: the original's formula exactly; the bundled training configs and every import set 20.
    loss_reference_batch: int | None = Field(None, ge=1)
    distribution: Literal["auto", "none", "mirrored", "multi_worker"] = "auto"
    #: Knowledge distillation (train --teacher): temperature and weights of the teacher's terms.
    distill_temperature: float = Field(2.0, gt=0)
    distill_weight: float = Field(0.5, ge=0)
    #: Magnitude pruning during fine-tuning (0 = off): final sparsity and schedule.
    prune_final_sparsity: float = Field(0.0, ge=0, lt=1)
    prune_begin_step: int = Field(0, ge=0)
    prune_end_step: int = Field(1000, ge=1)
    #: Layers kept fixed while training (fnmatch patterns of layer names, e.g. [conv1, "fire2_*"]):
    #: fine-tuning a trained detector on a few hundred frames changes only the later layers.
    freeze: list[str] = Field(default_factory=list)


    @model_validator(mode="after")
    def _prune_schedule(self):
        if self.prune_final_sparsity > 0 and self.prune_end_step <= self.prune_begin_step:
            raise ValueError(
                f"prune_end_step ({self.prune_end_step}) must be greater than prune_begin_step ({self.prune_begin_step})"
            )
        return self


class PostprocessConfig(_Strict, DecodeDefaults):
    """The decode defaults (squeezedet.core.geometry) that exported models carry in their sidecar."""

    @field_validator("nms_threshold")
    @classmethod
    def _overlap(cls, v):
        if v <= 0:  # a config asks for a positive NMS IoU (a sidecar may hold 0)
            raise PydanticCustomError("greater_than", "Input should be greater than 0")
        return v


class Config(_Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)

    @model_validator(mode="after")
    def _class_map_targets(self):
        unknown = sorted(set(self.data.class_map.values()) - set(self.model.classes))
        if unknown:
            raise ValueError(f"data.class_map maps to {unknown}, which are not in model.classes {self.model.classes}")
        return self

    def hash(self) -> str:
        """Short stable hash of the settings that change the model (stored in exported metadata)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def format_validation_error(exc: ValidationError, source: str) -> str:
    """First error of a pydantic ValidationError as 'source: dotted.key: reason' (one line)."""
    errs = exc.errors()
    first = errs[0]
    loc = ".".join(str(p) for p in first["loc"]) or "<root>"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (+{len(errs) - 1} more error(s))" if len(errs) > 1 else ""
    return f"{source}: {loc}: {msg}{more}"


def load_yaml(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    return raw


def load_config(path=None, overrides: dict | None = None) -> Config:
    """Load and validate a config file (None = all defaults); relative data/weights paths are kept as written."""
    raw = load_yaml(path) if path is not None else {}
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path or "<config>"))) from None


def save_config(cfg: Config, path) -> Path:
    from squeezedet.core.io import atomic_write_text

    return atomic_write_text(path, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
