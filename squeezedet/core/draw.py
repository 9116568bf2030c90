"""Draw detections on a frame (OpenCV): shared by `squeezedet predict`, previews and the edge daemon."""

from __future__ import annotations

import numpy as np

_PALETTE = (
    (255, 56, 56), (72, 249, 10), (0, 194, 255), (255, 157, 151), (146, 204, 23), (61, 219, 134),
    (26, 147, 52), (0, 212, 187), (44, 153, 168), (255, 178, 29), (207, 210, 49), (132, 56, 255),
)


def color_for(index: int) -> tuple[int, int, int]:
    return _PALETTE[int(index) % len(_PALETTE)]


def draw_detections(image_rgb, boxes, names, scores=None, color_keys=None, captions=None) -> np.ndarray:
    """A copy of ``image_rgb`` with labelled boxes; ``color_keys`` (class or track ids) pick colours."""
    import cv2

    img = np.ascontiguousarray(image_rgb).copy()
    h, w = img.shape[:2]
    thick = max(1, round(min(h, w) / 300))
    font_scale = max(0.4, min(h, w) / 900)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    for i, box in enumerate(boxes):
        key = color_keys[i] if color_keys is not None else hash(names[i]) % len(_PALETTE)
        color = color_for(key)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(img, (x1, y1), (x2, y2), color, thick, cv2.LINE_AA)
        text = captions[i] if captions is not None else (
            f"{names[i]} {scores[i]:.2f}" if scores is not None else str(names[i])
        )
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        ty = max(y1, th + base + 2)
        cv2.rectangle(img, (x1, ty - th - base - 2), (x1 + tw + 2, ty), color, -1)
        cv2.putText(img, text, (x1 + 1, ty - base - 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return img
