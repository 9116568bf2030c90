"""Drawing detections on frames, and annotated videos (written atomically: temp, then rename).

Shared by `squeezedet predict`, `squeezedet augment-preview` and the edge daemon.

Colours are derived from the label text, so a class keeps its colour across runs, models and tools.
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import numpy as np

from squeezedet.errors import DataError

log = logging.getLogger(__name__)

_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}


def label_colour(label: str) -> tuple[int, int, int]:
    """A stable, saturated RGB colour for a label."""
    import colorsys

    hue = (zlib.crc32(label.encode()) % 360) / 360.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(image_rgb: np.ndarray, boxes, labels, scores=None, track_ids=None,
                    thickness: int | None = None) -> np.ndarray:
    """A copy of ``image_rgb`` with xyxy pixel ``boxes`` and "label score" captions ("#id label score"
    when ``track_ids`` are given; just the label without ``scores``). ``labels`` are class names.
    ``thickness`` of the lines in pixels; None = scaled with the image (1 px up to 540p)."""
    import cv2

    out = np.ascontiguousarray(image_rgb, dtype=np.uint8).copy()
    h, w = out.shape[:2]
    thickness = thickness or max(1, round(min(h, w) / 360))
    font_scale = max(0.4, min(h, w) / 900)
    ids = list(track_ids) if track_ids is not None else [None] * len(labels)
    scores = list(scores) if scores is not None else [None] * len(labels)
    for box, label, score, tid in zip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), labels, scores, ids):
        colour = label_colour(str(label))
        x1, y1, x2, y2 = (round(v) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        caption = str(label) if score is None else f"{label} {float(score):.2f}"
        if tid is not None:
            caption = f"#{tid} {caption}"
        (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1  # inside the box at the top edge
        cv2.rectangle(out, (x1, top), (x1 + tw + 2, top + th + base + 2), colour, -1)
        cv2.putText(out, caption, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0),
                    thickness, cv2.LINE_AA)
    return out


class AnnotatedVideoWriter:
    """Writes frames to a hidden temp file next to ``path``; ``close()`` renames it into place, so a
    crash or kill never leaves a truncated video under the configured name."""

    def __init__(self, path, fps: float):
        self.path = Path(path)
        self.fps = fps
        self.frames = 0
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._writer = None

    def write(self, image_rgb: np.ndarray) -> None:
        import cv2

        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = image_rgb.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*_FOURCC.get(self.path.suffix.lower(), "mp4v"))
            writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w, h))
            if not writer.isOpened():
                writer.release()
                raise DataError(f"{self.path}: cannot write a '{self.path.suffix}' video here")
            self._writer = writer
        self._writer.write(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file and move it into place; None when no frame was written."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        if not self._tmp.is_file():
            raise DataError(f"{self.path}: the video writer produced no file")
        os.replace(self._tmp, self.path)
        log.info("annotated video written", extra={"fields": {"path": str(self.path), "frames": self.frames}})
        return self.path
