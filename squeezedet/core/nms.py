"""Greedy non-maximum suppression, per class, plus top-k."""

from __future__ import annotations

import numpy as np

from squeezedet.core.boxes import iou_matrix


def nms(boxes, scores, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy NMS (highest score first); a box is dropped when IoU > threshold."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(boxes) == 0:
        return np.zeros((0,), dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    ious = iou_matrix(boxes[order], boxes[order])
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(order[i])
        suppressed |= ious[i] > iou_threshold
    return np.asarray(keep, dtype=np.int64)


def per_class_nms(boxes, scores, labels, iou_threshold: float) -> np.ndarray:
    """NMS run separately for each label; returns kept indices sorted by descending score."""
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep.extend(idx[nms(np.asarray(boxes)[idx], scores[idx], iou_threshold)])
    keep = np.asarray(keep, dtype=np.int64)
    return keep[np.argsort(-scores[keep], kind="stable")] if len(keep) else keep


def top_k(scores, k: int) -> np.ndarray:
    """Indices of the k highest scores, highest first."""
    scores = np.asarray(scores).reshape(-1)
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part], kind="stable")]
