"""Model geometry and decode defaults, declared once (numpy + pydantic, no TensorFlow).

The training config's ``model`` and ``postprocess`` sections (:mod:`squeezedet.config`) and the sidecar
of every exported model (:mod:`squeezedet.core.metadata`) are these models plus fields of their own, so
the input size, padding, kernels and anchors a model was trained at follow the same rules wherever they
are read, and the decoder's defaults are written down here only.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_serializer, model_validator

from squeezedet.core.anchors import anchor_grid, grid_size

#: conv1's kernel: SqueezeNet v1.1's 3x3 in SqueezeDet, SqueezeNet v1.0's 7x7 in SqueezeDet+.
CONV1_KERNELS = {"squeezedet": 3, "squeezedet_plus": 7}
#: One anchor's (width, height) in input pixels.
AnchorShape = Annotated[list[float], Field(min_length=2, max_length=2)]
#: Output channels of one fire module: [squeeze, expand 1x1, expand 3x3].
FireChannels = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=3, max_length=3)]
#: Each fire module's channels in network order: SqueezeNet v1.1's in SqueezeDet (fire10/11 are the paper's
#: additions), v1.0's in SqueezeDet+. ``fire_channels`` overrides some of them in a channel-pruned model.
FIRE_CHANNELS = {
    "squeezedet": {
        "fire2": (16, 64, 64), "fire3": (16, 64, 64), "fire4": (32, 128, 128), "fire5": (32, 128, 128),
        "fire6": (48, 192, 192), "fire7": (48, 192, 192), "fire8": (64, 256, 256), "fire9": (64, 256, 256),
        "fire10": (96, 384, 384), "fire11": (96, 384, 384),
    },
    "squeezedet_plus": {
        "fire2": (96, 64, 64), "fire3": (96, 64, 64), "fire4": (192, 128, 128), "fire5": (192, 128, 128),
        "fire6": (288, 192, 192), "fire7": (288, 192, 192), "fire8": (384, 256, 256), "fire9": (384, 256, 256),
        "fire10": (384, 256, 256), "fire11": (384, 256, 256),
    },
}


class ModelGeometry(BaseModel):
    """What fixes the raw ConvDet tensor's shape and the anchors it is decoded against.

    A sidecar states every value; the training config adds the paper's KITTI defaults."""

    architecture: Literal["squeezedet", "squeezedet_plus"] = "squeezedet"
    input_width: int = Field(ge=1)
    input_height: int = Field(ge=1)
    #: Padding of conv1 and the three max-pools. "same" (ours) keeps every pixel; the original 1242x375
    #: release used "valid" (grid 76x22). Published weights only work with the geometry they were trained at.
    padding: Literal["same", "valid"] = "same"
    #: Kernel of the ConvDet layer: 3 in the paper, 1 in the authors' small mobile variant.
    convdet_kernel: Literal[1, 3] = 3
    anchor_shapes: list[AnchorShape] = Field(min_length=1)
    #: Channel-pruned fire modules (``squeezedet prune``): name -> [squeeze, expand 1x1, expand 3x3]; the
    #: others keep FIRE_CHANNELS. Absent (None) is left out of dumps, so older configs keep their hash.
    fire_channels: dict[str, FireChannels] | None = None

    @field_validator("fire_channels")
    @classmethod
    def _known_fires(cls, v, info: ValidationInfo):
        known = FIRE_CHANNELS.get(info.data.get("architecture"), {})
        unknown = sorted(set(v or {}) - set(known))
        if unknown and known:
            raise ValueError(f"{', '.join(unknown)}: not a fire module of {info.data['architecture']} "
                             f"({', '.join(known)})")
        return v

    @model_serializer(mode="wrap")
    def _omit_unpruned(self, handler):
        data = handler(self)
        if self.fire_channels is None and isinstance(data, dict):
            data.pop("fire_channels", None)
        return data

    @field_validator("anchor_shapes")
    @classmethod
    def _positive(cls, v):
        if any(w <= 0 or h <= 0 for w, h in v):
            raise ValueError("anchor widths and heights must be > 0")
        return v

    @model_validator(mode="after")
    def _grid_fits(self):
        self.expected_grid()  # a ValueError naming the input size when it is too small
        return self

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.input_width, self.input_height)

    @property
    def num_anchors(self) -> int:
        return len(self.anchor_shapes)

    @property
    def conv1_kernel(self) -> int:
        return CONV1_KERNELS[self.architecture]

    def fire_layout(self) -> dict[str, tuple[int, int, int]]:
        """Every fire module's (squeeze, expand 1x1, expand 3x3), in network order, overrides applied."""
        overrides = self.fire_channels or {}
        return {name: tuple(overrides.get(name, default)) for name, default in FIRE_CHANNELS[self.architecture].items()}

    def expected_grid(self) -> tuple[int, int]:
        """(grid_width, grid_height) that the input size, padding and conv1 kernel give."""
        return grid_size(self.input_width, self.input_height, self.padding, self.conv1_kernel)

    @property
    def grid_size(self) -> tuple[int, int]:
        """(grid_width, grid_height) of the raw output tensor."""
        return self.expected_grid()

    def anchors(self) -> np.ndarray:
        """The anchor grid [grid_h * grid_w * A, 4] (cx, cy, w, h) every consumer of this geometry uses."""
        return anchor_grid(self.input_width, self.input_height, self.anchor_shapes, self.grid_size)


class DecodeDefaults(BaseModel):
    """How a raw output becomes detections unless the caller overrides it: the training config's
    ``postprocess`` section, copied into each exported model's sidecar."""

    score_threshold: float = Field(0.3, ge=0, le=1)
    nms_threshold: float = Field(0.4, gt=0, le=1)
    top_k: int = Field(64, ge=1)  #: candidates kept before NMS
    max_detections: int = Field(100, ge=1)
