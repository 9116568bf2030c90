"""Counting lines for traffic: a confirmed track whose bottom-centre path crosses a line segment counts
once, ``in`` or ``out`` by its direction, and the totals survive restarts (a count that resets on
reboot is worthless).

A crossing is decided on the track's path, not per frame: the track keeps an *anchor*, its last
position strictly on one side of the line; the crossing is counted when a later position is strictly on
the other side and the step anchor -> position passes through the segment (not the line's extension).
Each track counts at most once per line, so a car that stops on the line and wobbles across it
counts one, and a point exactly on the line never decides anything.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.tracker import TrackedObject
from pipeline.zones import Shape, bottom_centre
from squeezedet.core.io import atomic_write_json

log = logging.getLogger(__name__)

_DIRECTIONS = {"up": (0.0, -1.0), "down": (0.0, 1.0), "left": (-1.0, 0.0), "right": (1.0, 0.0)}
STATE_VERSION = 1


@dataclass(frozen=True)
class Crossing:
    line: str
    direction: str  #: "in" | "out"
    obj: TrackedObject
    totals: dict  #: {"in": n, "out": n} for this label on this line, after the crossing


class _Path:
    __slots__ = ("anchor", "side", "counted")

    def __init__(self, anchor: np.ndarray, side: int):
        self.anchor = anchor
        self.side = side
        self.counted = False


class Line:
    def __init__(self, name: str, cfg, totals: dict | None = None):
        self.name = name
        self.shape = Shape.from_config(cfg)
        self.in_direction = cfg.in_direction
        self.labels = None if cfg.labels is None else set(cfg.labels)
        #: label -> {"in": n, "out": n}
        self.totals: dict[str, dict[str, int]] = {
            label: {"in": int(v.get("in", 0)), "out": int(v.get("out", 0))} for label, v in (totals or {}).items()}
        self._paths: dict[int, _Path] = {}

    def _side(self, a, b, p) -> int:
        cross = float((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]))
        return (cross > 0) - (cross < 0)

    def update(self, objects: Sequence[TrackedObject], ended: Sequence[TrackedObject],
               size: tuple[int, int]) -> list[Crossing]:
        a, b = self.shape.pixels(size)
        normal = np.array([-(b[1] - a[1]), b[0] - a[0]])  # positive side: where _side() is +1
        in_sign = 1 if float(np.dot(_DIRECTIONS[self.in_direction], normal)) > 0 else -1
        crossings = []
        for obj in objects:
            if obj.missed or (self.labels is not None and obj.label not in self.labels):
                continue
            p = np.asarray(bottom_centre(obj.box))
            side = self._side(a, b, p)
            path = self._paths.get(obj.track_id)
            if path is None:
                if side:
                    self._paths[obj.track_id] = _Path(p, side)
                continue
            if side == 0 or path.counted:
                continue
            if side != path.side and _segments_cross(path.anchor, p, a, b):
                path.counted = True
                direction = "in" if (side - path.side) * in_sign > 0 else "out"
                label_totals = self.totals.setdefault(obj.label, {"in": 0, "out": 0})
                label_totals[direction] += 1
                crossings.append(Crossing(self.name, direction, obj, dict(label_totals)))
            path.anchor, path.side = p, side
        for obj in ended:
            self._paths.pop(obj.track_id, None)
        return crossings

    def reset(self) -> None:
        self.totals = {label: {"in": 0, "out": 0} for label in self.totals}


def _segments_cross(p, q, a, b) -> bool:
    """Does segment p-q cross segment a-b (p and q strictly on opposite sides of a-b's line)?"""
    def orient(u, v, w):
        return (v[0] - u[0]) * (w[1] - u[1]) - (v[1] - u[1]) * (w[0] - u[0])

    d1, d2 = orient(p, q, a), orient(p, q, b)
    return (d1 <= 0 <= d2) or (d2 <= 0 <= d1)


class LineCounters:
    """All lines of one camera, with totals loaded from and saved to the shared CountStore."""

    def __init__(self, camera: str, lines: dict, store: CountStore | None = None,
                 on_total: Callable[[str, str, str, int], None] | None = None):
        self.camera = camera
        self.store = store
        #: (line, label, direction, total) for every changed total, called under the lock so that
        #: publishers see changes in order (a reset never races a crossing's publish)
        self.on_total = on_total
        saved = store.get(camera) if store is not None else {}
        self.lines = {name: Line(name, cfg, saved.get(name)) for name, cfg in lines.items()}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.lines)

    def update(self, objects, ended, size) -> list[Crossing]:
        crossings = []
        with self._lock:
            for line in self.lines.values():
                crossings += line.update(objects, ended, size)
            if self.on_total is not None:
                for c in crossings:
                    self.on_total(c.line, c.obj.label, c.direction, c.totals[c.direction])
            if crossings:
                self._save()  # under the lock: a reset between snapshot and write cannot be undone
        return crossings

    def ensure_labels(self, labels) -> None:
        """Zero totals for known labels, so every label's line sensors exist from the start."""
        with self._lock:
            for line in self.lines.values():
                for label in labels:
                    if line.labels is None or label in line.labels:
                        line.totals.setdefault(label, {"in": 0, "out": 0})

    def reset(self, line: str | None = None) -> list[str]:
        """Zero the totals of one line (or all); returns the names reset."""
        with self._lock:
            names = [line] if line is not None and line in self.lines else ([] if line else list(self.lines))
            for name in names:
                self.lines[name].reset()
                if self.on_total is not None:
                    for label in self.lines[name].totals:
                        for direction in ("in", "out"):
                            self.on_total(name, label, direction, 0)
            if names:
                self._save()
        return names

    def totals(self) -> dict[str, dict[str, dict[str, int]]]:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, dict[str, dict[str, int]]]:
        return {name: {label: dict(v) for label, v in line.totals.items()} for name, line in self.lines.items()}

    def geometry(self, size) -> dict:
        return {name: {"points": line.shape.pixels(size).round(1).tolist(), "in_direction": line.in_direction}
                for name, line in self.lines.items()}

    def _save(self) -> None:
        """Persist the totals; the caller holds ``self._lock`` (the store's lock is only ever taken inside it)."""
        if self.store is not None:
            self.store.put(self.camera, self._snapshot())


class CountStore:
    """The daemon's persisted line totals: ``{"version": 1, "cameras": {camera: {line: {label:
    {"in": n, "out": n}}}}}`` in one JSON file, rewritten atomically (temp file + rename) on every change,
    so a power cut leaves the previous or the new file, never half of one. Thread-safe."""

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, dict] = {}
        if self.path.is_file():
            try:
                raw = json.loads(self.path.read_text())
                cameras = raw.get("cameras", {}) if isinstance(raw, dict) else {}
                self._data = {str(k): v for k, v in cameras.items() if isinstance(v, dict)}
            except (OSError, ValueError) as exc:
                aside = self.path.with_name(self.path.name + ".bad")
                try:  # keep the evidence: the next save would overwrite it
                    self.path.replace(aside)
                except OSError:
                    aside = None
                log.error("line counts file unreadable, starting from zero",
                          extra={"fields": {"path": str(self.path), "error": str(exc),
                                            "kept_as": str(aside) if aside else None}})

    def get(self, camera: str) -> dict:
        with self._lock:
            return json.loads(json.dumps(self._data.get(camera, {})))

    def put(self, camera: str, totals: dict) -> None:
        with self._lock:
            self._data[camera] = totals
            try:
                atomic_write_json(self.path, {"version": STATE_VERSION, "cameras": self._data})
            except OSError as exc:
                log.error("cannot save line counts", extra={"fields": {"path": str(self.path), "error": str(exc)}})
