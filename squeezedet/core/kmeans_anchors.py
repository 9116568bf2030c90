"""Anchor shapes from data: k-means on (w, h) with 1 - IoU as the distance (boxes aligned at centre).

IoU distance makes a 10 px error on a small pedestrian count as much as a 50 px error on a close car,
which Euclidean k-means would not.
"""

from __future__ import annotations

import numpy as np


def wh_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU of centre-aligned boxes: wh [N, 2] vs anchors [K, 2] -> [N, K]."""
    inter = np.minimum(wh[:, None, 0], anchors[None, :, 0]) * np.minimum(wh[:, None, 1], anchors[None, :, 1])
    union = (wh[:, 0] * wh[:, 1])[:, None] + (anchors[:, 0] * anchors[:, 1])[None, :] - inter
    return inter / union


def mean_best_iou(wh, anchors) -> float:
    """Average over boxes of the IoU with their best-fitting anchor shape."""
    return float(wh_iou(np.asarray(wh, np.float64), np.asarray(anchors, np.float64)).max(axis=1).mean())


def kmeans_anchors(wh, k: int = 9, seed: int = 0, max_iter: int = 300) -> np.ndarray:
    """k anchor shapes (w, h), sorted by area; k-means++ seeding, median update, IoU distance."""
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    wh = wh[(wh[:, 0] > 0) & (wh[:, 1] > 0)]
    if len(wh) < k:
        raise ValueError(f"need at least k={k} boxes, got {len(wh)}")
    rng = np.random.default_rng(seed)
    centers = [wh[rng.integers(len(wh))]]
    for _ in range(1, k):
        d = 1.0 - wh_iou(wh, np.array(centers)).max(axis=1)
        p = d**2
        centers.append(wh[rng.choice(len(wh), p=p / p.sum())] if p.sum() > 0 else wh[rng.integers(len(wh))])
    centers = np.array(centers)
    assign = None
    for _ in range(max_iter):
        new = np.argmax(wh_iou(wh, centers), axis=1)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = wh[assign == j]
            if len(members):
                centers[j] = np.median(members, axis=0)
    return centers[np.argsort(centers[:, 0] * centers[:, 1])].astype(np.float32)
