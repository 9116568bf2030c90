"""Multi-frame tracking and confidence smoothing: what turns per-frame detections into reliable objects.

Detections are associated with tracks by IoU against each track's predicted box (last box moved by
its average per-frame displacement, so crossing objects do not swap ids), solved globally with the
Hungarian algorithm and never across classes. Every track carries a smoothed score (EMA, or median of
the last N frames with missed frames counted as 0). Hysteresis keeps consumers calm:

* a track is *confirmed* after ``min_hits`` consecutive detected frames with a smoothed score at or
  above ``threshold`` - a one-frame false positive never gets there when ``min_hits`` >= 2;
* a confirmed track survives up to ``max_missed - 1`` consecutive missed frames (it is reported with
  raw score 0 and its last box) and *ends* on the ``max_missed``-th, so brief misses do not flicker.

Only confirmed tracks are reported, and public ids are handed out at confirmation (1, 2, 3, ...).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from squeezedet.core.boxes import iou_matrix

_VELOCITY_MOMENTUM = 0.5  # weight of the previous velocity when a new displacement is observed


@dataclass(frozen=True)
class TrackedObject:
    """Snapshot of a confirmed track after one frame."""

    track_id: int
    label: str
    score: float  #: raw detector score this frame (0.0 when missed)
    smoothed_score: float
    box: tuple[float, float, float, float]  #: xyxy, frame pixels (last seen box while missed)
    missed: int  #: consecutive frames without a matching detection
    first_frame: int
    last_frame: int  #: last frame with a matching detection


@dataclass(frozen=True)
class TrackEvent:
    type: str  #: "new" | "update" | "end"
    before: TrackedObject | None  #: state at the previous event of this track (None for "new")
    after: TrackedObject


@dataclass
class TrackerOutput:
    objects: list[TrackedObject]  #: confirmed, live tracks, by id
    events: list[TrackEvent]


class ScoreSmoother:
    """Smoothed score of one track; ``push(0.0)`` for a missed frame."""

    def __init__(self, method: str, alpha: float, window: int):
        self.method = method
        self.alpha = alpha
        self._history: deque[float] = deque(maxlen=window)
        self.value = 0.0

    def push(self, score: float) -> float:
        if self.method == "median":
            self._history.append(score)
            self.value = float(np.median(self._history))
        elif not self._history:  # EMA starts at the first observation, not at 0
            self._history.append(score)
            self.value = float(score)
        else:
            self.value = self.alpha * float(score) + (1.0 - self.alpha) * self.value
        return self.value


class _Track:
    def __init__(self, label, box, score, frame, cfg):
        self.id: int | None = None  # public id, given at confirmation
        self.label = label
        self.box = np.asarray(box, dtype=np.float64)
        self.velocity: np.ndarray | None = None  # per-frame xyxy displacement, once seen twice
        self.score = float(score)
        self.smoother = ScoreSmoother(cfg.smoothing, cfg.ema_alpha, cfg.median_window)
        self.smoother.push(score)
        self.hits = 0
        self.missed = 0
        self.first_frame = frame
        self.last_frame = frame
        self.reported: TrackedObject | None = None  # state at the last event

    def predicted_box(self) -> np.ndarray:
        if self.velocity is None:
            return self.box
        return self.box + self.velocity * (self.missed + 1)

    def matched(self, box, score, frame) -> None:
        box = np.asarray(box, dtype=np.float64)
        step = (box - self.box) / (self.missed + 1)
        if self.velocity is None:
            self.velocity = step
        else:
            self.velocity = _VELOCITY_MOMENTUM * self.velocity + (1 - _VELOCITY_MOMENTUM) * step
        self.box = box
        self.score = float(score)
        self.missed = 0
        self.last_frame = frame
        self.smoother.push(score)

    def missed_frame(self) -> None:
        self.score = 0.0
        self.missed += 1
        self.smoother.push(0.0)

    def snapshot(self) -> TrackedObject:
        return TrackedObject(
            track_id=self.id,
            label=self.label,
            score=round(self.score, 4),
            smoothed_score=round(self.smoother.value, 4),
            box=tuple(round(float(v), 2) for v in self.box),
            missed=self.missed,
            first_frame=self.first_frame,
            last_frame=self.last_frame,
        )


class Tracker:
    """Feed it every processed frame's detections, in order; it returns confirmed objects and events."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._tracks: list[_Track] = []
        self._ids = itertools.count(1)
        self._frame = -1

    def update(self, boxes, scores, labels, frame_index: int | None = None) -> TrackerOutput:
        """boxes xyxy [N, 4] in frame pixels, scores [N], labels: N class names."""
        self._frame = self._frame + 1 if frame_index is None else int(frame_index)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        labels = list(labels)
        matches, unmatched = self._associate(boxes, labels)
        for t_idx, d_idx in matches:
            self._tracks[t_idx].matched(boxes[d_idx], scores[d_idx], self._frame)
        matched_tracks = {t for t, _ in matches}
        for t_idx, track in enumerate(self._tracks):
            if t_idx not in matched_tracks:
                track.missed_frame()
        for d_idx in unmatched:
            self._tracks.append(_Track(labels[d_idx], boxes[d_idx], scores[d_idx], self._frame, self.cfg))

        events: list[TrackEvent] = []
        alive: list[_Track] = []
        for track in self._tracks:
            event = self._step(track)
            if event is not None:
                events.append(event)
            if track.missed < self.cfg.max_missed:
                alive.append(track)
        self._tracks = alive
        objects = sorted((t.snapshot() for t in alive if t.id is not None), key=lambda o: o.track_id)
        return TrackerOutput(objects, events)

    def flush(self) -> list[TrackEvent]:
        """End every track (at shutdown or when the model's classes change)."""
        events = [TrackEvent("end", t.reported, t.snapshot()) for t in self._tracks if t.id is not None]
        self._tracks = []
        return events

    def _associate(self, boxes: np.ndarray, labels: list) -> tuple[list[tuple[int, int]], list[int]]:
        """Class-aware Hungarian matching on IoU with predicted boxes."""
        if not self._tracks or not len(boxes):
            return [], list(range(len(boxes)))
        predicted = np.stack([t.predicted_box() for t in self._tracks])
        iou = iou_matrix(predicted, boxes)
        same_class = np.array([[t.label == lab for lab in labels] for t in self._tracks], dtype=bool)
        valid = same_class & (iou >= self.cfg.iou_threshold)
        cost = np.where(valid, 1.0 - iou, 1e6)
        rows, cols = linear_sum_assignment(cost)
        matches = [(int(r), int(c)) for r, c in zip(rows, cols) if valid[r, c]]
        taken = {c for _, c in matches}
        return matches, [d for d in range(len(boxes)) if d not in taken]

    def _step(self, track: _Track) -> TrackEvent | None:
        """Advance the hysteresis of one track; return the event this frame produced, if any."""
        cfg = self.cfg
        detected = track.missed == 0
        if detected and track.smoother.value >= cfg.threshold:
            track.hits += 1
        else:
            track.hits = 0
        if track.id is None:
            if track.hits >= cfg.min_hits:
                track.id = next(self._ids)
                track.reported = track.snapshot()
                return TrackEvent("new", None, track.reported)
            return None
        now = track.snapshot()
        if track.missed >= cfg.max_missed:
            return TrackEvent("end", track.reported, now)
        before = track.reported
        moved = iou_matrix(np.asarray([before.box]), np.asarray([now.box]))[0, 0] < cfg.update_iou
        rescored = abs(now.smoothed_score - before.smoothed_score) >= cfg.update_score_delta
        if detected and (moved or rescored):
            track.reported = now
            return TrackEvent("update", before, now)
        return None
