"""Object filters: per-label plausibility limits on raw detections, applied before tracking.

Frigate's most repeated answer to "it sees a person in my hedge" is a filter: a person is taller than
wide and bigger than a few pixels; a car at the far end of a driveway is never 40 % of the frame. A
detection that fails its label's limits never reaches the tracker, so it cannot confirm a track.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WILDCARD = "*"


class ObjectFilters:
    """``filters`` maps label -> ObjectFilter; ``"*"`` applies to labels without their own entry."""

    def __init__(self, filters: dict):
        self.filters = dict(filters)

    def __len__(self) -> int:
        return len(self.filters)

    def for_label(self, label: str):
        return self.filters.get(label, self.filters.get(WILDCARD))

    def keep(self, boxes: np.ndarray, scores: np.ndarray, labels: Sequence[str]) -> np.ndarray:
        """Boolean [N]: True for detections within their label's limits."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        keep = np.ones(len(labels), dtype=bool)
        if not self.filters:
            return keep
        w = np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
        h = np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
        area = w * h
        ratio = w / np.maximum(h, 1e-9)
        for i, label in enumerate(labels):
            f = self.for_label(label)
            if f is None:
                continue
            checks = (
                (f.min_score, scores[i], True), (f.min_area, area[i], True), (f.max_area, area[i], False),
                (f.min_ratio, ratio[i], True), (f.max_ratio, ratio[i], False),
            )
            for limit, value, is_min in checks:
                if limit is not None and (value < limit if is_min else value > limit):
                    keep[i] = False
                    break
        return keep
