"""Where objects are: zones (regions with inertia, enter/leave events, per-label occupancy) and masks
(regions whose detections are dropped before tracking).

Both test one point per object, the bottom centre of its box: where a car or a person touches the
ground, which is what "in the driveway" means on a camera looking down at an angle (the box's centre of
a tall person standing on the pavement can lie over the road). Shapes may be written in pixels or
normalised to [0, 1]; they are scaled to each frame's size, so a lower stream resolution keeps working.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.tracker import TrackedObject


def bottom_centre(box) -> tuple[float, float]:
    x1, _, x2, y2 = box
    return (float(x1) + float(x2)) / 2.0, float(y2)


class Shape:
    """A polygon or line from the config, scaled to pixels per frame size (cached)."""

    def __init__(self, points: Sequence[Sequence[float]], normalized: bool):
        self.points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        self.normalized = normalized
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def from_config(cls, cfg) -> Shape:
        return cls(cfg.points, cfg.is_normalized(cfg.points))

    def pixels(self, size: tuple[int, int]) -> np.ndarray:
        """Points in frame pixels for a (width, height) frame."""
        pts = self._cache.get(size)
        if pts is None:
            pts = self.points * np.asarray(size, dtype=np.float64) if self.normalized else self.points.copy()
            self._cache[size] = pts
        return pts

    def contains(self, point: tuple[float, float], size: tuple[int, int]) -> bool:
        """Inside or on the edge of the polygon (OpenCV's point-in-polygon test)."""
        import cv2

        contour = self.pixels(size).astype(np.float32).reshape(-1, 1, 2)
        return cv2.pointPolygonTest(contour, (float(point[0]), float(point[1])), False) >= 0


class Masks:
    """Drops detections whose bottom centre lies in any mask (that applies to their label)."""

    def __init__(self, masks: Iterable):
        self._masks = [(Shape.from_config(m), None if m.labels is None else set(m.labels)) for m in masks]

    def __len__(self) -> int:
        return len(self._masks)

    def keep(self, boxes: np.ndarray, labels: Sequence[str], size: tuple[int, int]) -> np.ndarray:
        """Boolean [N]: True for detections outside every mask."""
        keep = np.ones(len(labels), dtype=bool)
        for i, (box, label) in enumerate(zip(boxes, labels)):
            point = bottom_centre(box)
            for shape, only in self._masks:
                if (only is None or label in only) and shape.contains(point, size):
                    keep[i] = False
                    break
        return keep

    def geometry(self, size: tuple[int, int]) -> list[list[list[float]]]:
        return [shape.pixels(size).round(1).tolist() for shape, _ in self._masks]


@dataclass(frozen=True)
class ZoneEvent:
    type: str  #: "enter" | "leave"
    zone: str
    obj: TrackedObject  #: the track at the frame of the event
    count: int  #: objects of this label in the zone after the event


class _Presence:
    """One track's standing in one zone: its confirmed state and how many frames disagree with it."""

    __slots__ = ("inside", "streak", "label")

    def __init__(self, label: str):
        self.inside = False
        self.streak = 0
        self.label = label


class Zone:
    def __init__(self, name: str, cfg):
        self.name = name
        self.shape = Shape.from_config(cfg)
        self.min_frames = cfg.min_frames
        self.labels = None if cfg.labels is None else set(cfg.labels)
        self._tracks: dict[int, _Presence] = {}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self._tracks.values():
            if p.inside:
                out[p.label] = out.get(p.label, 0) + 1
        return out

    def occupants(self) -> list[int]:
        return sorted(tid for tid, p in self._tracks.items() if p.inside)

    def update(self, objects: Sequence[TrackedObject], size: tuple[int, int]) -> list[ZoneEvent]:
        """Advance every track by one frame. A track must be seen inside (or outside) on ``min_frames``
        consecutive detected frames to enter (or leave); missed frames carry no position and change
        nothing; a track that has gone leaves at once."""
        events = []
        seen = set()
        for obj in objects:
            if self.labels is not None and obj.label not in self.labels:
                continue
            seen.add(obj.track_id)
            presence = self._tracks.setdefault(obj.track_id, _Presence(obj.label))
            if obj.missed:
                continue
            inside = self.shape.contains(bottom_centre(obj.box), size)
            if inside == presence.inside:
                presence.streak = 0
                continue
            presence.streak += 1
            if presence.streak >= self.min_frames:
                presence.inside, presence.streak = inside, 0
                events.append(self._event("enter" if inside else "leave", obj))
        for tid in [t for t in self._tracks if t not in seen]:
            presence = self._tracks.pop(tid)
            if presence.inside:
                gone = next((o for o in objects if o.track_id == tid), None)
                events.append(ZoneEvent("leave", self.name, gone or _ghost(tid, presence.label),
                                        self.counts().get(presence.label, 0)))
        return events

    def end(self, ended: Sequence[TrackedObject]) -> list[ZoneEvent]:
        """Tracks that ended this frame (or at shutdown) leave with their last state."""
        events = []
        for obj in ended:
            presence = self._tracks.pop(obj.track_id, None)
            if presence is not None and presence.inside:
                events.append(ZoneEvent("leave", self.name, obj, self.counts().get(presence.label, 0)))
        return events

    def _event(self, kind: str, obj: TrackedObject) -> ZoneEvent:
        return ZoneEvent(kind, self.name, obj, self.counts().get(obj.label, 0))


def _ghost(track_id: int, label: str) -> TrackedObject:
    return TrackedObject(track_id, label, 0.0, 0.0, (0.0, 0.0, 0.0, 0.0), 0, -1, -1)


class Zones:
    """All zones of one camera. Updated by the camera's frame thread; ``counts()`` and ``membership()``
    may be read from any thread."""

    def __init__(self, zones: dict):
        self.zones = {name: Zone(name, cfg) for name, cfg in zones.items()}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.zones)

    def update(self, objects: Sequence[TrackedObject], ended: Sequence[TrackedObject],
               size: tuple[int, int]) -> list[ZoneEvent]:
        events = []
        with self._lock:
            for zone in self.zones.values():
                events += zone.end(ended)
                events += zone.update(objects, size)
        return events

    def counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {name: zone.counts() for name, zone in self.zones.items()}

    def membership(self, track_id: int) -> list[str]:
        with self._lock:
            return [name for name, zone in self.zones.items() if track_id in zone.occupants()]

    def geometry(self, size: tuple[int, int]) -> dict[str, list[list[float]]]:
        return {name: zone.shape.pixels(size).round(1).tolist() for name, zone in self.zones.items()}
