"""Box formats, IoU and the SqueezeDet delta codec (dx, dy, dw, dh with the original's safe exp)."""

from __future__ import annotations

import numpy as np

#: Above this the exponent in decode becomes linear, as in the original (keeps early training finite).
EXP_THRESH = 1.0


def xyxy_to_cxcywh(boxes) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float32)
    out = np.empty_like(b)
    out[..., 0] = (b[..., 0] + b[..., 2]) / 2.0
    out[..., 1] = (b[..., 1] + b[..., 3]) / 2.0
    out[..., 2] = b[..., 2] - b[..., 0]
    out[..., 3] = b[..., 3] - b[..., 1]
    return out


def cxcywh_to_xyxy(boxes) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float32)
    out = np.empty_like(b)
    out[..., 0] = b[..., 0] - b[..., 2] / 2.0
    out[..., 1] = b[..., 1] - b[..., 3] / 2.0
    out[..., 2] = b[..., 0] + b[..., 2] / 2.0
    out[..., 3] = b[..., 1] + b[..., 3] / 2.0
    return out


def box_area(boxes) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def intersection_matrix(a, b) -> np.ndarray:
    """Pairwise intersection areas of xyxy boxes a [N,4] and b [M,4] -> [N, M] float64."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(iw, 0, None) * np.clip(ih, 0, None)


def iou_matrix(a, b) -> np.ndarray:
    """Pairwise IoU of xyxy boxes a [N,4] and b [M,4] -> [N, M] float64 (0 where the union is empty)."""
    inter = intersection_matrix(a, b)
    union = box_area(np.asarray(a).reshape(-1, 4))[:, None] + box_area(np.asarray(b).reshape(-1, 4))[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def safe_exp(w, thresh: float = EXP_THRESH) -> np.ndarray:
    """exp(w) for w <= thresh, continued linearly (same value and slope) above it."""
    w = np.asarray(w, dtype=np.float32)
    slope = np.float32(np.exp(thresh))
    linear = (w - thresh + 1.0) * slope
    expo = np.exp(np.where(w > thresh, 0.0, w))
    return np.where(w > thresh, linear, expo).astype(np.float32)


def encode_boxes(gt_cxcywh, anchors_cxcywh) -> np.ndarray:
    """Regression targets (dx, dy, dw, dh) of boxes against their assigned anchors, both (cx, cy, w, h)."""
    g = np.asarray(gt_cxcywh, dtype=np.float32)
    a = np.asarray(anchors_cxcywh, dtype=np.float32)
    out = np.empty(np.broadcast_shapes(g.shape, a.shape), dtype=np.float32)
    out[..., 0] = (g[..., 0] - a[..., 0]) / a[..., 2]
    out[..., 1] = (g[..., 1] - a[..., 1]) / a[..., 3]
    out[..., 2] = np.log(np.maximum(g[..., 2], 1e-6) / a[..., 2])
    out[..., 3] = np.log(np.maximum(g[..., 3], 1e-6) / a[..., 3])
    return out


def decode_deltas(deltas, anchors_cxcywh) -> np.ndarray:
    """Inverse of :func:`encode_boxes` (with safe exp) -> boxes (cx, cy, w, h)."""
    d = np.asarray(deltas, dtype=np.float32)
    a = np.asarray(anchors_cxcywh, dtype=np.float32)
    out = np.empty(np.broadcast_shapes(d.shape, a.shape), dtype=np.float32)
    out[..., 0] = a[..., 0] + d[..., 0] * a[..., 2]
    out[..., 1] = a[..., 1] + d[..., 1] * a[..., 3]
    out[..., 2] = a[..., 2] * safe_exp(d[..., 2])
    out[..., 3] = a[..., 3] * safe_exp(d[..., 3])
    return out


def clip_xyxy(boxes, width: float, height: float) -> np.ndarray:
    b = np.array(boxes, dtype=np.float32, copy=True)
    b[..., 0::2] = np.clip(b[..., 0::2], 0, width - 1)
    b[..., 1::2] = np.clip(b[..., 1::2], 0, height - 1)
    return b
