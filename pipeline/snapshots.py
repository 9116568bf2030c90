"""Snapshots: a JPEG of what was seen, when a track is confirmed and again when its best score improves.

The picture is the frame (or the object's crop with some context) with the object's box drawn, scaled
to the configured size. It is published retained on ``P/C/<label>/snapshot`` (Home Assistant's MQTT
``image`` entity shows it) and optionally saved to a folder that is kept under a size cap by deleting
the oldest files. Re-snapshots are rate-limited per track, so a car idling in view costs nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pipeline.tracker import TrackedObject
from squeezedet.core.annotate import draw_detections
from squeezedet.core.io import atomic_write_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    track_id: int
    label: str
    score: float
    jpeg: bytes
    width: int
    height: int
    path: str | None  #: saved file, when save_dir is set


def render(image_rgb: np.ndarray, obj: TrackedObject, cfg) -> tuple[bytes, int, int]:
    """JPEG bytes (and size) of the frame or the object's crop, box drawn, scaled as configured."""
    import cv2

    img = image_rgb
    h, w = img.shape[:2]
    x1, y1, x2, y2 = obj.box
    ox, oy = 0, 0  # crop origin
    if cfg.crop:
        mx, my = (x2 - x1) * cfg.crop_margin, (y2 - y1) * cfg.crop_margin
        cx1, cy1 = max(int(x1 - mx), 0), max(int(y1 - my), 0)
        cx2, cy2 = min(int(np.ceil(x2 + mx)), w), min(int(np.ceil(y2 + my)), h)
        if cx2 > cx1 and cy2 > cy1:
            img, ox, oy = img[cy1:cy2, cx1:cx2], cx1, cy1
            h, w = img.shape[:2]
    out_w, out_h = output_size(w, h, cfg.width, cfg.height)
    if (out_w, out_h) != (w, h):
        interp = cv2.INTER_AREA if out_w < w else cv2.INTER_LINEAR
        img = cv2.resize(img, (out_w, out_h), interpolation=interp)
    if cfg.draw_box:  # drawn at the output size, so lines and caption stay crisp in any scaling
        sx, sy = out_w / w, out_h / h
        box = ((x1 - ox) * sx, (y1 - oy) * sy, (x2 - ox) * sx, (y2 - oy) * sy)
        img = draw_detections(img, [box], [obj.label], [obj.score], [obj.track_id],
                              thickness=max(2, round(min(out_w, out_h) / 120)))
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, cfg.quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes(), out_w, out_h


def output_size(w: int, h: int, width: int | None, height: int | None) -> tuple[int, int]:
    """Both given: exactly that; one given: the other follows the aspect ratio; none: unchanged."""
    if width and height:
        return width, height
    if height:
        return max(1, round(w * height / h)), height
    if width:
        return width, max(1, round(h * width / w))
    return w, h


class Snapshotter:
    """Decides when a track deserves a (new) snapshot and produces it. One per camera, frame thread only."""

    def __init__(self, cfg, camera: str):
        self.cfg = cfg
        self.camera = camera
        self._best: dict[int, tuple[float, float]] = {}  # track id -> (best score, monotonic time)
        self.taken = 0
        #: one subfolder per camera: the size cap of one never deletes another's files ("front" vs "front-door")
        self._dir = Path(cfg.save_dir) / camera if cfg.save_dir else None

    def update(self, image_rgb: np.ndarray, objects: list[TrackedObject], new_ids: set[int],
               ended_ids: set[int], timestamp: float) -> list[Snapshot]:
        """Snapshots for this frame: every newly confirmed track, and tracks whose raw score beats
        their best by ``min_score_gain`` after ``min_interval_s``."""
        if not self.cfg.enabled:
            return []
        now = time.monotonic()
        out = []
        for obj in objects:
            if obj.missed:
                continue
            best = self._best.get(obj.track_id)
            if obj.track_id in new_ids or best is None:
                due = True
            else:
                due = (obj.score >= best[0] + self.cfg.min_score_gain
                       and now - best[1] >= self.cfg.min_interval_s)
            if not due:
                continue
            try:
                jpeg, w, h = render(image_rgb, obj, self.cfg)
            except Exception as exc:  # noqa: BLE001 - a snapshot must never cost a frame
                log.error("snapshot failed", extra={"fields": {"camera": self.camera, "error": str(exc)}})
                continue
            self._best[obj.track_id] = (obj.score, now)
            self.taken += 1
            out.append(Snapshot(obj.track_id, obj.label, obj.score, jpeg, w, h, self._save(obj, jpeg, timestamp)))
        for tid in ended_ids:
            self._best.pop(tid, None)
        return out

    def _save(self, obj: TrackedObject, jpeg: bytes, timestamp: float) -> str | None:
        if self._dir is None:
            return None
        stamp = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        path = self._dir / f"{self.camera}-{obj.label}-{obj.track_id}-{stamp}.jpg"
        try:
            atomic_write_bytes(path, jpeg)
            self._enforce_cap()
        except OSError as exc:
            log.error("snapshot not saved", extra={"fields": {"path": str(path), "error": str(exc)}})
            return None
        return str(path)

    def _enforce_cap(self) -> None:
        """Delete the oldest snapshots of this camera until the folder's share fits max_dir_mb."""
        files = []
        for p in self._dir.glob("*.jpg"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            files.append((st.st_mtime_ns, p.name, st.st_size, p))
        files.sort()
        total = sum(f[2] for f in files)
        cap = self.cfg.max_dir_mb * 1024 * 1024
        for _, _, size, path in files[:-1]:  # never the one just written
            if total <= cap:
                break
            try:
                path.unlink()
                total -= size
            except FileNotFoundError:
                pass
