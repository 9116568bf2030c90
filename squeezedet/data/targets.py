"""Training targets, assigned exactly as in the SqueezeDet paper (numpy, no TensorFlow).

Each ground-truth box takes the free anchor with the highest IoU; if it overlaps no free anchor at all,
it takes the free anchor nearest in squared (cx, cy, w, h) distance. One anchor serves one box.

The dense per-anchor target row is ``[mask, dx, dy, dw, dh, one_hot(C), cx, cy, w, h]`` (9 + C floats):
the GT box itself is kept so the loss can regress confidence towards the IoU of the predicted box.
"""

from __future__ import annotations

import numpy as np

from squeezedet.core.boxes import (
    cxcywh_to_xyxy,
    encode_boxes,
    iou_matrix,
    xyxy_to_cxcywh,
)


def target_width(num_classes: int) -> int:
    return 9 + num_classes


def assign_anchors(gt_xyxy, anchors_cxcywh) -> np.ndarray:
    """Anchor index for each GT box (paper's rule), -1 only if there are more boxes than anchors."""
    gt_xyxy = np.asarray(gt_xyxy, np.float32).reshape(-1, 4)
    anchors_cxcywh = np.asarray(anchors_cxcywh, np.float32)
    n = len(gt_xyxy)
    out = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return out
    ious = iou_matrix(gt_xyxy, cxcywh_to_xyxy(anchors_cxcywh))
    gt_c = xyxy_to_cxcywh(gt_xyxy)
    taken = np.zeros(len(anchors_cxcywh), dtype=bool)
    for i in range(n):
        iou = np.where(taken, -1.0, ious[i])
        best = int(np.argmax(iou))
        if iou[best] > 0:
            out[i] = best
        else:
            dist = np.sum((gt_c[i][None, :] - anchors_cxcywh) ** 2, axis=1)
            dist[taken] = np.inf
            best = int(np.argmin(dist))
            if not np.isfinite(dist[best]):
                continue
            out[i] = best
        taken[out[i]] = True
    return out


def encode_targets(gt_xyxy, gt_labels, anchors_cxcywh, num_classes: int) -> np.ndarray:
    """Dense [N_anchors, 9 + C] float32 target rows for one image (see module docstring)."""
    anchors_cxcywh = np.asarray(anchors_cxcywh, np.float32)
    y = np.zeros((len(anchors_cxcywh), target_width(num_classes)), np.float32)
    gt_xyxy = np.asarray(gt_xyxy, np.float32).reshape(-1, 4)
    keep = (gt_xyxy[:, 2] > gt_xyxy[:, 0]) & (gt_xyxy[:, 3] > gt_xyxy[:, 1])
    gt_xyxy, gt_labels = gt_xyxy[keep], np.asarray(gt_labels, np.int64).reshape(-1)[keep]
    idx = assign_anchors(gt_xyxy, anchors_cxcywh)
    ok = idx >= 0
    idx, gt_xyxy, gt_labels = idx[ok], gt_xyxy[ok], gt_labels[ok]
    gt_c = xyxy_to_cxcywh(gt_xyxy)
    y[idx, 0] = 1.0
    y[idx, 1:5] = encode_boxes(gt_c, anchors_cxcywh[idx])
    y[idx, 5 + gt_labels] = 1.0
    y[idx, 5 + num_classes :] = gt_c
    return y
