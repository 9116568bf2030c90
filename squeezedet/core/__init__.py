"""numpy-only building blocks shared by training, evaluation, export and the edge daemon.

Nothing under ``squeezedet.core`` may import TensorFlow (a test checks it in a subprocess).
"""

from squeezedet.core.anchors import DEFAULT_KITTI_ANCHOR_SHAPES, anchor_grid, grid_size
from squeezedet.core.boxes import (
    cxcywh_to_xyxy,
    decode_deltas,
    encode_boxes,
    iou_matrix,
    safe_exp,
    xyxy_to_cxcywh,
)
from squeezedet.core.nms import nms, per_class_nms
from squeezedet.core.postprocess import Detections, postprocess, split_convdet_output

__all__ = [
    "DEFAULT_KITTI_ANCHOR_SHAPES",
    "Detections",
    "anchor_grid",
    "cxcywh_to_xyxy",
    "decode_deltas",
    "encode_boxes",
    "grid_size",
    "iou_matrix",
    "nms",
    "per_class_nms",
    "postprocess",
    "safe_exp",
    "split_convdet_output",
    "xyxy_to_cxcywh",
]
