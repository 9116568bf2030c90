"""One camera's reporting: frames, tracks, zones, lines and snapshots mapped onto its MQTT topics
(names from pipeline.mqtt.Topics, payloads from pipeline.payloads), plus the events that local consumers
read (``on_event``).

Streams (detections, events) go through the publisher's bounded queue; everything a late subscriber
or Home Assistant must know at once (counts, occupancy, totals, snapshots, status, discovery) is
retained state. Event payloads are built even without a broker, for ``recent_events()``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable

from pipeline import homeassistant as ha
from pipeline import payloads
from pipeline.lines import Crossing
from pipeline.mqtt import OFFLINE, ONLINE, MqttPublisher, Topics
from pipeline.snapshots import Snapshot
from pipeline.tracker import TrackedObject, TrackEvent
from pipeline.zones import ZoneEvent


class Reporter:
    """Per-camera topics. ``publisher`` None = no broker: only ``on_event`` sees the events."""

    def __init__(self, publisher: MqttPublisher | None, topics: Topics, mqtt_cfg, camera_cfg,
                 on_event: Callable[[dict], None] = lambda payload: None):
        self.publisher = publisher
        self.topics = topics
        self.cfg = mqtt_cfg
        self.camera_cfg = camera_cfg
        self._on_event = on_event
        self._labels: list[str] = []
        self._last_detections = float("-inf")
        self._status = {"state": "starting", "detail": "", "model_id": None, "model_error": None}
        self._lock = threading.RLock()  # status/labels change from the source, watcher and frame threads

    # -- state -----------------------------------------------------------------------------------
    def _state(self, topic: str, payload) -> None:
        if self.publisher is not None:
            self.publisher.set_state(topic, payload)

    def _stream(self, topic: str, payload) -> None:
        if self.publisher is not None:
            self.publisher.publish(topic, payload, retain=self.cfg.retain)

    def _zone_labels(self, zone: str) -> list[str]:
        only = self.camera_cfg.zones[zone].labels
        return [lab for lab in self._labels if only is None or lab in only]

    def _line_labels(self, line: str) -> list[str]:
        only = self.camera_cfg.lines[line].labels
        return [lab for lab in self._labels if only is None or lab in only]

    def set_labels(self, labels: Iterable[str], line_totals: dict | None = None) -> None:
        """Known class names: zero counts, occupancy OFF, line totals and discovery configs exist before
        the first object is seen."""
        with self._lock:
            new = [lab for lab in labels if lab not in self._labels]
            self._labels += new
            ha_cfg = self.cfg.home_assistant
            discover = ha_cfg.enabled and self.publisher is not None
            for label in new:
                self._state(self.topics.count(label), "0")
                self._state(self.topics.occupancy(label), ha.OFF)
                if discover:
                    for topic, payload in ha.label_entities(self.topics, ha_cfg, label,
                                                            self.camera_cfg.snapshots.enabled):
                        self._state(topic, payload)
                for zone in self.camera_cfg.zones:
                    if label in self._zone_labels(zone):
                        self._state(self.topics.zone_count(zone, label), "0")
                        self._state(self.topics.zone_occupancy(zone, label), ha.OFF)
                        if discover:
                            for topic, payload in ha.zone_entities(self.topics, ha_cfg, zone, label):
                                self._state(topic, payload)
                for line in self.camera_cfg.lines:
                    if label in self._line_labels(line) and discover:
                        for topic, payload in ha.line_entities(self.topics, ha_cfg, line, label):
                            self._state(topic, payload)
        if line_totals is not None:
            self.line_totals(line_totals)

    def line_totals(self, totals: dict) -> None:
        """Retained totals of every line and label (at start, after a reset)."""
        with self._lock:
            for line, labels in totals.items():
                for label in set(self._line_labels(line)) | set(labels):
                    for direction in ("in", "out"):
                        n = labels.get(label, {}).get(direction, 0)
                        self._state(self.topics.line_total(line, label, direction), str(n))

    def line_total(self, line: str, label: str, direction: str, total: int) -> None:
        """One retained line total (called by LineCounters whenever a total changes)."""
        self._state(self.topics.line_total(line, label, direction), str(total))

    def status(self, **fields) -> None:
        """Merge fields (state, detail, model_id, model_error) into the retained camera status; the
        camera's availability follows its source (online only while frames can flow)."""
        with self._lock:
            self._status.update(fields)
            self._state(self.topics.status, payloads.status(self.topics.camera, self._status, time.time()))
            self._state(self.topics.camera_availability, ONLINE if self._status["state"] == "online" else OFFLINE)

    # -- per frame ---------------------------------------------------------------------------------
    def frame(self, index: int, timestamp: float, size: tuple[int, int], objects: list[TrackedObject],
              events: list[TrackEvent], model_id: str, inference_ms: float, zone_events: list[ZoneEvent] = (),
              crossings: list[Crossing] = (), snapshots: list[Snapshot] = (),
              zone_counts: dict | None = None) -> None:
        camera = self.topics.camera
        shots = {s.track_id: s for s in snapshots}
        self._track_events(events, index, timestamp, size, model_id, shots)
        for snap in snapshots:
            self._state(self.topics.snapshot(snap.label), snap.jpeg)
        self._zone_events(zone_events, index, timestamp, size)
        for c in crossings:
            self._emit(self.topics.line_events(c.line), payloads.crossing(camera, c, index, timestamp, size))
        if self.publisher is None:
            return
        if timestamp - self._last_detections >= self.cfg.detections_interval_s:
            self._last_detections = timestamp
            self._stream(self.topics.detections,
                         payloads.detections(camera, index, timestamp, size, model_id, inference_ms, objects))
        self._counts(Counter(o.label for o in objects), zone_counts or {})

    def _counts(self, counts: Counter, zone_counts: dict) -> None:
        with self._lock:
            for label in set(self._labels) | set(counts):
                n = counts.get(label, 0)
                self._state(self.topics.count(label), str(n))
                self._state(self.topics.occupancy(label), ha.ON if n else ha.OFF)
            for zone, by_label in zone_counts.items():
                for label in set(self._zone_labels(zone)) | set(by_label):
                    n = by_label.get(label, 0)
                    self._state(self.topics.zone_count(zone, label), str(n))
                    self._state(self.topics.zone_occupancy(zone, label), ha.ON if n else ha.OFF)

    def end(self, events: list[TrackEvent], zone_events: list[ZoneEvent], index: int, size: tuple[int, int],
            model_id: str) -> None:
        """Shutdown: end the open tracks (and their zone presence), zero the counts, camera offline."""
        now = time.time()
        self._track_events(events, index, now, size, model_id, {})
        self._zone_events(zone_events, index, now, size)
        self._counts(Counter(), {zone: {} for zone in self.camera_cfg.zones})
        self.status(state=OFFLINE, detail="daemon stopped")

    def _zone_events(self, zone_events: list[ZoneEvent], index: int, timestamp: float,
                     size: tuple[int, int]) -> None:
        for ev in zone_events:
            self._emit(self.topics.zone_events(ev.zone),
                       payloads.zone_event(self.topics.camera, ev, index, timestamp, size))

    def stats(self, fields: dict) -> None:
        self._stream(self.topics.camera_stats, payloads.camera_stats(self.topics.camera, fields, time.time()))

    def _emit(self, topic: str, payload: dict) -> None:
        self._on_event(payload)
        self._stream(topic, payload)

    def _track_events(self, events: list[TrackEvent], index: int, timestamp: float, size: tuple[int, int],
                      model_id: str, shots: dict[int, Snapshot]) -> None:
        for event in events:
            snap = shots.get(event.after.track_id) if event.type == "new" else None
            ref = None if snap is None else payloads.snapshot_reference(self.topics.snapshot(snap.label), snap)
            self._emit(self.topics.events,
                       payloads.track_event(self.topics.camera, event, index, timestamp, size, model_id, ref))
