"""Frames for viewers: the newest processed frame, drawn on and JPEG-encoded off the frame loop.

The frame loop only swaps a reference (``CameraWorker.latest()``); everything here runs on the HTTP
server's side. Each camera's newest frame is encoded at most once per variant (annotated / raw) on a
small thread pool, however many viewers ask, and a viewer always gets the newest frame: frames that
arrive while an encode runs are skipped, never queued.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Executor

import cv2
import numpy as np

from pipeline.views import CameraView, LatestFrame
from squeezedet.core.annotate import draw_detections, label_colour

ZONE_COLOUR = (255, 200, 0)  # RGB amber: zones and counting lines, apart from the per-label box colours
MASK_COLOUR = (128, 128, 128)


def shapes(geometry: dict, kind: str) -> list[tuple[str, list[tuple[int, int]]]]:
    """(name, integer pixel points) of ``kind`` ("zones", "masks", "lines") in ``CameraWorker.geometry()``:
    named shapes come as ``{name: points}`` or ``{name: {"points": points, ...}}``, unnamed ones (masks)
    as a list of point lists."""
    found = geometry.get(kind) or {}
    items = found.items() if isinstance(found, dict) else ((f"{kind[:-1]} {i + 1}", v) for i, v in enumerate(found))
    out = []
    for name, shape in items:
        points = shape.get("points") if isinstance(shape, dict) else shape
        points = [(round(float(x)), round(float(y))) for x, y in points or []]
        if points:
            out.append((str(name), points))
    return out


def _in_arrow(shape: dict | list) -> tuple[float, float] | None:
    """Unit vector of a line's ``in`` direction (image axes), if the geometry says."""
    direction = shape.get("in_direction") if isinstance(shape, dict) else None
    return {"up": (0.0, -1.0), "down": (0.0, 1.0), "left": (-1.0, 0.0), "right": (1.0, 0.0)}.get(direction)


def _caption(img: np.ndarray, text: str, org: tuple[int, int], colour, scale: float, thickness: int) -> None:
    """Text with a dark outline, readable on sky and asphalt alike."""
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def scaled(image: np.ndarray, height: int | None) -> tuple[np.ndarray, float]:
    """The image at most ``height`` rows high (aspect kept) and the scale applied; the same array when
    it is small enough already."""
    if not height or image.shape[0] <= height:
        return image, 1.0
    scale = height / image.shape[0]
    size = (max(1, round(image.shape[1] * scale)), height)
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), scale


def draw_overlay(latest: LatestFrame, geometry: dict, counts: dict, height: int | None = None) -> np.ndarray:
    """The frame (downscaled to ``height`` rows first, if taller) with confirmed tracks (id, label,
    smoothed score), zones, masks and counting lines with their in/out totals; always a new RGB array
    (the frame itself is shared with the daemon)."""
    objs = latest.objects
    image, k = scaled(latest.image, height)
    out = draw_detections(image, [[v * k for v in o.box] for o in objs], [o.label for o in objs],
                          [o.smoothed_score for o in objs], [o.track_id for o in objs])
    if k != 1.0:
        geometry = _scale_geometry(geometry, k)
    h, w = out.shape[:2]
    thickness = max(1, round(min(h, w) / 360))
    scale = max(0.45, min(h, w) / 600)  # zone and line captions: readable in a half-width browser tile
    for name, points in shapes(geometry, "masks"):
        cv2.polylines(out, [np.array(points, np.int32)], True, MASK_COLOUR, thickness, cv2.LINE_AA)
    for name, points in shapes(geometry, "zones"):
        cv2.polylines(out, [np.array(points, np.int32)], True, ZONE_COLOUR, thickness + 1, cv2.LINE_AA)
        inside = sum((counts.get("zones") or {}).get(name, {}).values())
        x, y = min(points, key=lambda p: (p[1], p[0]))
        _caption(out, f"{name}: {inside}", (x + 4, max(y - 6, 14)), ZONE_COLOUR, scale, thickness)
    raw_lines = geometry.get("lines") or {}
    for name, points in shapes(geometry, "lines"):
        (x1, y1), (x2, y2) = points[0], points[-1]
        cv2.line(out, (x1, y1), (x2, y2), ZONE_COLOUR, thickness + 2, cv2.LINE_AA)
        for p in (points[0], points[-1]):
            cv2.circle(out, p, thickness + 3, ZONE_COLOUR, -1, cv2.LINE_AA)
        arrow = _in_arrow(raw_lines.get(name, {})) if isinstance(raw_lines, dict) else None
        if arrow is not None:  # which way counts as "in"
            mx, my = (x1 + x2) // 2, (y1 + y2) // 2
            length = max(12, min(h, w) // 20)
            tip = (round(mx + arrow[0] * length), round(my + arrow[1] * length))
            cv2.arrowedLine(out, (mx, my), tip, ZONE_COLOUR, thickness + 1, cv2.LINE_AA, tipLength=0.4)
        per_label = (counts.get("lines") or {}).get(name, {})
        n_in = sum(v.get("in", 0) for v in per_label.values())
        n_out = sum(v.get("out", 0) for v in per_label.values())
        _caption(out, f"{name} in {n_in} out {n_out}", (min(x1, x2) + 4, max(min(y1, y2) - 8, 14)),
                 ZONE_COLOUR, scale, thickness)
    return out


def _scale_geometry(geometry: dict, k: float) -> dict:
    def pts(points):
        return [[x * k, y * k] for x, y in points]

    def one(shape):
        return {**shape, "points": pts(shape["points"])} if isinstance(shape, dict) else pts(shape)

    out = dict(geometry)
    for kind in ("zones", "masks", "lines"):
        found = geometry.get(kind) or {}
        out[kind] = {n: one(v) for n, v in found.items()} if isinstance(found, dict) else [one(v) for v in found]
    return out


def encode_jpeg(image_rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


class Jpeg:
    """One encoded frame: ``key`` identifies the frame it came from."""

    __slots__ = ("key", "data", "index", "width", "height")

    def __init__(self, key, data: bytes, index: int, width: int, height: int):
        self.key, self.data, self.index, self.width, self.height = key, data, index, width, height


class JpegCache:
    """The newest JPEG of one camera, per variant (annotated or raw, full size or at most ``height``
    rows). Used from the server's event loop only (no locks); drawing and encoding run on ``executor``."""

    def __init__(self, worker: CameraView, executor: Executor, quality: int):
        self.worker = worker
        self.executor = executor
        self.quality = quality
        self.encoded = 0  #: frames drawn and encoded (viewers share them)
        self.cpu_seconds = 0.0  #: CPU time those took (thread time of the encoding threads)
        self._count_lock = threading.Lock()
        self._done: dict[tuple, Jpeg] = {}
        self._pending: dict[tuple, tuple[tuple, asyncio.Future]] = {}

    async def get(self, raw: bool = False, height: int | None = None) -> Jpeg | None:
        """The newest frame as JPEG (None before the first frame); waits for at most one encode."""
        latest = self.worker.latest()
        if latest is None:
            return None
        key = (latest.index, latest.monotonic)
        variant = (raw, height)
        done = self._done.get(variant)
        if done is not None and done.key == key:
            return done
        pending = self._pending.get(variant)
        if pending is None or pending[0] != key:
            future = asyncio.get_running_loop().run_in_executor(self.executor, self._encode, latest, variant, key)
            future.add_done_callback(self._store(variant))
            pending = self._pending[variant] = (key, future)
        # shield: a viewer that hangs up must not cancel the encode the others wait for
        return await asyncio.shield(pending[1])

    def _store(self, variant: tuple):
        def store(future: asyncio.Future) -> None:
            if future.cancelled() or future.exception() is not None:
                return
            jpeg = future.result()
            current = self._done.get(variant)
            if current is None or current.key < jpeg.key:
                self._done[variant] = jpeg
        return store

    def _encode(self, latest, variant: tuple, key) -> Jpeg:
        started = time.thread_time()
        raw, height = variant
        if raw:
            image = scaled(latest.image, height)[0]
        else:
            image = draw_overlay(latest, self.worker.geometry(), self.worker.counts(), height)
        data = encode_jpeg(image, self.quality)
        with self._count_lock:
            self.encoded += 1
            self.cpu_seconds += time.thread_time() - started
        return Jpeg(key, data, latest.index, image.shape[1], image.shape[0])


def label_css_colour(label: str) -> str:
    """The colour a label's boxes have, for the web page's legend."""
    r, g, b = label_colour(label)
    return f"#{r:02x}{g:02x}{b:02x}"
