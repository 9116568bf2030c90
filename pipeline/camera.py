"""One camera of the daemon: its source, filters and masks, tracker, zones, lines, snapshots and topics,
run on its own thread against the shared detector.

A camera's trouble stays its own: a lost stream is reopened by its source thread while the other
cameras keep going (the detector serves whoever has a frame), a frame that raises is counted and
skipped, and a camera that ends (a non-looping file) simply stops asking for inference.

Local consumers (the HTTP server, /metrics) read a camera through ``pipeline.views.CameraView``:
``latest()``, ``stats()``, ``counts()``, ``geometry()``, ``recent_events()`` and ``source_uri``; all are
thread-safe and cost the frame loop a reference swap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from pathlib import Path

import numpy as np

from pipeline.filters import ObjectFilters
from pipeline.lines import CountStore, LineCounters
from pipeline.metrics import LatencyHistogram
from pipeline.mqtt import MqttPublisher, Topics
from pipeline.reporter import Reporter
from pipeline.scheduler import SharedDetector
from pipeline.snapshots import Snapshotter
from pipeline.sources import FrameSource, Opener
from pipeline.tracker import Tracker
from pipeline.views import LatestFrame
from pipeline.zones import Masks, Zones
from squeezedet.core.annotate import AnnotatedVideoWriter, draw_detections
from squeezedet.errors import SqueezeDetError

log = logging.getLogger("pipeline.camera")

EVENT_HISTORY = 200


class CameraWorker:
    """Construction builds everything but opens nothing; ``open()`` opens the source (a bad file fails
    with SourceError), ``start()`` starts its threads, ``stop()`` asks the loop to end, ``shutdown()``
    (after the loop has ended) ends open tracks and reports the camera offline."""

    def __init__(self, cfg, mqtt_cfg, run_cfg, shared: SharedDetector | None, publisher: MqttPublisher | None,
                 store: CountStore | None = None, opener: Opener | None = None, output_video: str | None = None):
        self.name: str = cfg.name
        self.cfg = cfg
        self.run_cfg = run_cfg
        self.shared = shared
        self.topics = Topics(mqtt_cfg.prefix, self.name)
        self.tracker = Tracker(cfg.tracker)
        self.filters = ObjectFilters(cfg.filters)
        self.masks = Masks(cfg.masks)
        self.zones = Zones(cfg.zones)
        self.lines = LineCounters(self.name, cfg.lines, store)
        self.snapshotter = Snapshotter(cfg.snapshots, self.name)
        self._events: deque[dict] = deque(maxlen=EVENT_HISTORY)
        self._lock = threading.Lock()
        self.reporter = Reporter(publisher, self.topics, mqtt_cfg, cfg, on_event=self._record)
        self.lines.on_total = self.reporter.line_total
        self.source = FrameSource(cfg.source, self.name, opener, on_status=self._on_source_status)
        self.frames = 0  #: frames processed
        self.errors = 0  #: frames whose processing raised (logged, skipped)
        self.filtered = 0  #: detections dropped by object filters
        self.masked = 0  #: detections dropped by masks
        self.reason = ""  #: why the loop ended
        self.last_frame_time: float | None = None  #: epoch seconds of the last processed frame
        self._source_state = ("starting", "")
        self._end_detail = "end of input"
        self._latest: LatestFrame | None = None
        self._labels: tuple[str, ...] = ()
        self._model_id = shared.detector.model_id if shared is not None else None
        self._recent: deque[tuple[float, float, float]] = deque(maxlen=4096)  # (monotonic, inference, wait)
        self.latency = LatencyHistogram()  #: inference seconds per frame, for /metrics
        self._window_s = min(max(mqtt_cfg.stats_interval_s, 1.0), 60.0)
        self._last_index, self._last_size = -1, (1, 1)
        self._stop = threading.Event()
        self.finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._output_video = output_video
        self._writer = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def attach(self, shared: SharedDetector) -> None:
        """The daemon loads the model after opening every source, then hands it to the cameras."""
        self.shared = shared
        self._model_id = shared.detector.model_id

    def open(self) -> None:
        self.source.open()

    def start(self) -> None:
        labels = self.shared.detector.class_names
        self._announce_labels(labels)
        if self._output_video:
            self._writer = AnnotatedVideoWriter(self._output_video,
                                                self.run_cfg.output_fps or self.source.fps or 10.0)
        self.source.start()
        self._thread = threading.Thread(target=self._loop, name=f"camera-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def shutdown(self) -> None:
        """After the loop: stop the source, close the debug video, end tracks, camera offline."""
        self.source.stop()
        if self._writer is not None:
            try:
                self._writer.close()
            except (OSError, SqueezeDetError) as exc:  # the debug video must not cost the offline message
                log.error("annotated video not written", extra={"fields": {"camera": self.name, "error": str(exc)}})
        ended = self.tracker.flush()
        ended_objs = [e.after for e in ended]
        zone_events = self.zones.update([], ended_objs, self._last_size)
        self.reporter.end(ended, zone_events, self._last_index, self._last_size, self._model_id)

    # -- frame loop --------------------------------------------------------------------------------
    def _loop(self) -> None:
        """Pipelined: frame N+1 goes to the detector before frame N is decoded, tracked and reported, so the
        detector never waits for this thread's bookkeeping (one frame in flight per camera)."""
        max_frames = self.run_cfg.max_frames
        pipelined = self.pipelined()
        pending = None  # (frame, request) in the detector, not yet processed
        try:
            while not self._stop.is_set():
                if max_frames and self.frames + (pending is not None) >= max_frames:
                    break
                frame = self.source.get(timeout=0.5)
                if frame is None:
                    if pending is not None:  # nothing new yet: finish the frame in flight now
                        self._complete(*pending)
                        pending = None
                    if self.source.ended:
                        self._report_end()
                        if self.run_cfg.stop_at_end:
                            self.reason = "end of input"
                            break
                    continue
                # The detector must never wait for this thread: the next frame is resized before the one in
                # flight is done, handed in the moment it is, and only then is the finished one decoded.
                try:
                    prepared = self.shared.prepare(frame.image)
                except Exception as exc:  # noqa: BLE001 - e.g. a frame the resize rejects: counted in _finish
                    prepared = exc
                if pending is not None and not isinstance(pending[1], BaseException):
                    pending[1].done.wait()
                if isinstance(prepared, BaseException):
                    request = prepared
                else:
                    try:
                        request = self.shared.submit(self.name, frame.image, prepared)
                    except Exception as exc:  # noqa: BLE001 - counted in _finish
                        request = exc
                previous = self._collect(pending)
                if pending is not None:
                    self._finish(pending[0], previous)
                pending = (frame, request)
                if not pipelined:
                    self._complete(*pending)
                    pending = None
            else:
                self.reason = "stopped"
            if pending is not None:
                self._complete(*pending)
            if max_frames and self.frames >= max_frames:
                self.reason = "max_frames reached"
        finally:
            self.finished.set()

    def pipelined(self) -> bool:
        """run.pipeline: auto and on pipeline; off takes each frame only after the previous one is reported."""
        return getattr(self.run_cfg, "pipeline", "auto") != "off"

    def _collect(self, pending):
        """Wait for the frame in flight: its Result, or the exception the detector raised for it."""
        if pending is None:
            return None
        if isinstance(pending[1], BaseException):  # failed before it reached the detector
            return pending[1]
        try:
            return self.shared.wait(pending[1])
        except Exception as exc:  # noqa: BLE001 - handled (counted, logged) in _finish
            return exc

    def _complete(self, frame, request) -> None:
        self._finish(frame, self._collect((frame, request)))

    def _finish(self, frame, result) -> None:
        """Track and report one detected frame; one bad frame must not take the camera (or the others) down."""
        self._last_index, self._last_size = frame.index, (frame.image.shape[1], frame.image.shape[0])
        try:
            if isinstance(result, BaseException):
                raise result
            self._process(frame, result)
        except Exception:
            self.errors += 1
            log.exception("frame failed", extra={"fields": {"camera": self.name, "frame": frame.index}})
        self.frames += 1
        self.last_frame_time = time.time()

    def _process(self, frame, result) -> None:
        detector = result.detector
        names = detector.class_names
        if tuple(names) != self._labels:
            self._announce_labels(names)
        self._model_id = detector.model_id
        dets = result.detections
        size = (frame.image.shape[1], frame.image.shape[0])
        labels = [names[i] for i in dets.labels]
        boxes = np.asarray(dets.boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(dets.scores, dtype=np.float64).reshape(-1)
        keep = self.filters.keep(boxes, scores, labels)
        self.filtered += int((~keep).sum())
        if len(self.masks):
            unmasked = self.masks.keep(boxes, labels, size)
            self.masked += int((keep & ~unmasked).sum())
            keep &= unmasked
        out = self.tracker.update(boxes[keep], scores[keep], [lab for lab, k in zip(labels, keep) if k], frame.index)
        ended = [e.after for e in out.events if e.type == "end"]
        zone_events = self.zones.update(out.objects, ended, size) if len(self.zones) else []
        crossings = self.lines.update(out.objects, ended, size) if len(self.lines) else []
        snapshots = self.snapshotter.update(frame.image, out.objects, {e.after.track_id for e in out.events
                                                                       if e.type == "new"},
                                            {o.track_id for o in ended}, frame.timestamp)
        self.reporter.frame(frame.index, frame.timestamp, size, out.objects, out.events, detector.model_id,
                            result.inference_ms, zone_events=zone_events, crossings=crossings, snapshots=snapshots,
                            zone_counts=self.zones.counts() if len(self.zones) else None)
        with self._lock:
            self._latest = LatestFrame(frame.image, frame.index, frame.timestamp, out.objects, time.monotonic())
            self._recent.append((time.monotonic(), result.inference_ms, result.wait_ms))
        self.latency.observe(result.inference_ms / 1000.0)
        if self._writer is not None:
            try:
                self._writer.write(draw_detections(
                    frame.image, [o.box for o in out.objects], [o.label for o in out.objects],
                    [o.smoothed_score for o in out.objects], [o.track_id for o in out.objects]))
            except SqueezeDetError as exc:  # debugging aid only: turn it off, keep detecting
                log.error("annotated video disabled", extra={"fields": {"camera": self.name, "error": str(exc)}})
                self._writer = None

    def _announce_labels(self, labels) -> None:
        self._labels = tuple(labels)
        self.lines.ensure_labels(labels)
        self.reporter.set_labels(labels, self.lines.totals() if len(self.lines) else None)

    # -- commands ----------------------------------------------------------------------------------
    def reset_counts(self, line: str | None = None) -> list[str]:
        """Zero the line totals (one line or all), persist, publish."""
        names = self.lines.reset(line)  # publishes the zeroed totals through lines.on_total
        if names:
            log.info("line counts reset", extra={"fields": {"camera": self.name, "lines": ",".join(names)}})
        return names

    def model_changed(self, model_id: str, error: str | None = None) -> None:
        if error is not None:
            self.reporter.status(model_error=error)
        else:
            self.reporter.status(model_id=model_id, model_error=None)

    # -- callbacks ---------------------------------------------------------------------------------
    def _on_source_status(self, state: str, detail: str) -> None:
        if state == "ended":  # reported by the loop once the last frame has been processed (_report_end)
            self._end_detail = detail
            return
        self._source_state = (state, detail)
        self.reporter.status(state=state, detail=detail)

    def _report_end(self) -> None:
        """The source is exhausted and its last frame reported: now the camera may go offline."""
        if self._source_state[0] != "ended":
            self._source_state = ("ended", self._end_detail)
            self.reporter.status(state="ended", detail=self._end_detail)

    def _record(self, payload: dict) -> None:
        with self._lock:
            self._events.append(payload)

    # -- observer API (thread-safe): pipeline.views.CameraView ------------------------------------
    @property
    def source_uri(self) -> str | None:
        return self.cfg.source.uri

    def latest(self) -> LatestFrame | None:
        with self._lock:
            return self._latest

    def recent_events(self, limit: int = 50) -> list[dict]:
        """The newest event payloads (as published on MQTT), newest last."""
        with self._lock:
            events = list(self._events)
        return events[-limit:] if limit > 0 else []

    def counts(self) -> dict:
        latest = self.latest()
        labels = Counter(o.label for o in latest.objects) if latest is not None else Counter()
        return {
            "labels": {label: labels.get(label, 0) for label in (*self._labels, *sorted(set(labels) - set(self._labels)))},
            "zones": self.zones.counts(),
            "lines": self.lines.totals(),
        }

    def geometry(self) -> dict:
        """Zones, masks and lines in pixels of the latest frame's size (empty before the first frame)."""
        latest = self.latest()
        if latest is None:
            return {"width": None, "height": None, "zones": {}, "masks": [], "lines": {}}
        size = (latest.image.shape[1], latest.image.shape[0])
        return {"width": size[0], "height": size[1], "zones": self.zones.geometry(size),
                "masks": self.masks.geometry(size), "lines": self.lines.geometry(size)}

    def stats(self) -> dict:
        """The camera's stats payload: throughput over the last stats window and running totals."""
        now = time.monotonic()
        with self._lock:
            recent = [r for r in self._recent if now - r[0] <= self._window_s]
        n = len(recent)
        span = self._window_s if n < 2 else max(now - recent[0][0], 1e-9)
        state, detail = self._source_state
        return {
            "fps": round(n / span, 2) if n else 0.0,
            "inference_ms": round(sum(r[1] for r in recent) / n, 2) if n else 0.0,
            "detector_wait_ms": round(sum(r[2] for r in recent) / n, 2) if n else 0.0,
            "frames": self.frames,
            "dropped_frames": self.source.dropped,
            "source_queue": self.source.queue_depth,
            "errors": self.errors,
            "filtered": self.filtered,
            "masked": self.masked,
            "snapshots": self.snapshotter.taken,
            "source_state": state,
            "source_detail": detail,
            "last_frame_age_s": None if self.last_frame_time is None else round(time.time() - self.last_frame_time, 2),
            "model_id": self._model_id,
        }


def camera_video_path(path: str | None, camera: str, several: bool) -> str | None:
    """run.output_video for one camera: as given with one camera, ``<stem>-<camera><suffix>`` with several."""
    if not path or not several:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}-{camera}{p.suffix}"))
