"""Greedy non-maximum suppression, per class, plus top-k — vectorised, no Python loop over boxes.

Greedy NMS keeps box j (in descending score order) unless a *kept* higher-ranked box overlaps it by
more than the threshold. That rule has exactly one solution, and iterating
``keep = not any(kept predecessor overlaps)`` from "all kept" reaches it: after t rounds the first t+1
boxes are settled, and in practice suppression chains are 2-4 deep, so a few matrix-vector rounds on
the (at most top-k) candidates replace the old box-by-box loop with identical results.
"""

from __future__ import annotations

import numpy as np

from squeezedet.core.boxes import iou_matrix


def greedy_keep(overlaps: np.ndarray) -> np.ndarray:
    """Boolean keep mask of greedy suppression for boxes already in rank order.

    ``overlaps[i, j]`` is True where box i (ranked before j) would suppress j; only i < j is used."""
    n = len(overlaps)
    over = np.triu(np.asarray(overlaps, dtype=bool), k=1).astype(np.float32)
    keep = np.ones(n, dtype=bool)
    for _ in range(n):  # converges in (longest suppression chain + 1) rounds; n bounds it
        new = (keep.astype(np.float32) @ over) == 0
        if np.array_equal(new, keep):
            break
        keep = new
    return keep


def nms(boxes, scores, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy NMS (highest score first); a box is dropped when IoU > threshold."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(boxes) == 0:
        return np.zeros((0,), dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    keep = greedy_keep(iou_matrix(b, b) > iou_threshold)
    return order[keep].astype(np.int64)


def per_class_nms(boxes, scores, labels, iou_threshold: float) -> np.ndarray:
    """NMS run separately for each label, all labels in one pass; kept indices by descending score
    (equal scores: lower label first, then input order)."""
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(scores) == 0:
        return np.zeros((0,), dtype=np.int64)
    order = np.lexsort((np.arange(len(scores)), labels, -scores))
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)[order]
    lab = labels[order]
    overlaps = (iou_matrix(b, b) > iou_threshold) & (lab[:, None] == lab[None, :])
    return order[greedy_keep(overlaps)].astype(np.int64)


def top_k(scores, k: int) -> np.ndarray:
    """Indices of the k highest scores, highest first."""
    scores = np.asarray(scores).reshape(-1)
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part], kind="stable")]
