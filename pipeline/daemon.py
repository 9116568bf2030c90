"""The edge daemon: source thread -> detector + tracker (frame loop) -> MQTT publisher thread.

Capture, inference and publishing run on separate threads, so the frame loop only ever waits for a
frame; network trouble costs it nothing. ``squeezedet-edge --config edge.yaml`` runs until SIGTERM or
SIGINT (finish the frame, end open tracks, publish ``offline``, flush, exit 0), ``run.max_frames``,
or the end of a non-looping file with ``run.stop_at_end``.

Exit status: 0 normal stop, 2 a user error (config, model, source; one line on stderr), 1 a bug.
Logs go to stdout as key=value or JSON lines; stderr is kept for the fatal one-liner.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone

from pipeline.config import EdgeConfig, load_edge_config
from pipeline.detector import Detector, ModelWatcher
from pipeline.mqtt import MqttPublisher, Reporter, Topics
from pipeline.sources import FrameSource, Opener, source_kind
from pipeline.tracker import Tracker
from squeezedet.core.annotate import AnnotatedVideoWriter, draw_detections
from squeezedet.errors import SqueezeDetError

log = logging.getLogger("pipeline.daemon")


class Daemon:
    """One camera. Construction opens the source and loads the model (errors are SqueezeDetError);
    ``run()`` blocks until a stop condition and returns the exit status."""

    def __init__(self, cfg: EdgeConfig, opener: Opener | None = None):
        self.cfg = cfg
        self.frames = 0  #: frames processed
        self.errors = 0  #: frames whose processing raised (logged, skipped)
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._last_heartbeat = float("-inf")
        self.publisher: MqttPublisher | None = None
        self.reporter: Reporter | None = None
        camera = cfg.camera.name
        if cfg.mqtt.enabled:
            topics = Topics(cfg.mqtt.prefix, camera)
            self.publisher = MqttPublisher(cfg.mqtt, cfg.mqtt.client_id or f"squeezedet-edge-{camera}",
                                           topics.availability, topics.commands, self._on_command)
            self.reporter = Reporter(self.publisher, topics, cfg.mqtt)
        self.tracker = Tracker(cfg.tracker)
        self.source = FrameSource(cfg.source, camera, opener, on_status=self._on_source_status)
        self.source.open()  # before the model: an unreadable video fails fast, with nothing else on stderr
        try:
            self.detector = Detector.from_config(cfg.model)
        except SqueezeDetError:
            self.source.stop()
            raise
        self.watcher = ModelWatcher(cfg.model, self._on_model_loaded, self._on_model_rejected)
        self._writer = None
        if cfg.run.output_video:
            self._writer = AnnotatedVideoWriter(cfg.run.output_video, cfg.run.output_fps or self.source.fps or 10.0)

    def stop(self) -> None:
        """Ask the frame loop to finish the current frame and shut down (thread- and signal-safe)."""
        self._stop.set()

    # -- main loop -----------------------------------------------------------------------------
    def run(self) -> int:
        det = self.detector
        log.info("starting", extra={"fields": {
            "camera": self.cfg.camera.name, "source": self.source.kind, "model_id": det.model_id,
            "runtime": det.runtime, "input": f"{det.meta.input_width}x{det.meta.input_height}",
            "classes": ",".join(det.class_names), "mqtt": self.cfg.mqtt.enabled}})
        if self.reporter is not None:
            self.reporter.online()
            self.reporter.set_labels(det.class_names)
            self.reporter.status(model_id=det.model_id)
            self.publisher.start()
        self.source.start()
        self.watcher.start()
        stats = _Window(time.monotonic())
        last_index, last_size = -1, (1, 1)
        reason = "stopped"
        try:
            while not self._stop.is_set():
                if time.monotonic() - stats.start >= self.cfg.mqtt.stats_interval_s:
                    self._report_stats(stats)
                    stats = _Window(time.monotonic())
                frame = self.source.get(timeout=0.5)
                if frame is None:
                    if self.source.ended and self.cfg.run.stop_at_end:
                        reason = "end of input"
                        break
                    continue
                last_index, last_size = frame.index, (frame.image.shape[1], frame.image.shape[0])
                try:
                    stats.add(self._process(frame))
                except Exception:  # one bad frame must not take the camera down
                    self.errors += 1
                    log.exception("frame failed", extra={"fields": {"frame": frame.index}})
                self.frames += 1
                self._heartbeat()
                if self.cfg.run.max_frames and self.frames >= self.cfg.run.max_frames:
                    reason = "max_frames reached"
                    break
        finally:
            self._shutdown(reason, last_index, last_size)
        return 0

    def _process(self, frame) -> float:
        """Detect, track, report and draw one frame; returns the inference time in ms."""
        detector = self.detector  # read once: a swap lands between frames, never inside one
        dets = detector.detect(frame.image)
        names = detector.class_names
        out = self.tracker.update(dets.boxes, dets.scores, [names[i] for i in dets.labels], frame.index)
        size = (frame.image.shape[1], frame.image.shape[0])
        if self.reporter is not None:
            self.reporter.frame(frame.index, frame.timestamp, size, out.objects, out.events,
                                detector.model_id, detector.last_inference_ms)
        for event in out.events:
            log.debug("track event", extra={"fields": {
                "type": event.type, "id": event.after.track_id, "label": event.after.label, "frame": frame.index}})
        if self._writer is not None:
            try:
                self._writer.write(draw_detections(
                    frame.image, [o.box for o in out.objects], [o.label for o in out.objects],
                    [o.smoothed_score for o in out.objects], [o.track_id for o in out.objects]))
            except SqueezeDetError as exc:  # debugging aid only: turn it off, keep detecting
                log.error("annotated video disabled", extra={"fields": {"error": str(exc)}})
                self._writer = None
        return detector.last_inference_ms

    def _heartbeat(self) -> None:
        """Touch run.health_file at most once a second: proof for a supervisor that frames flow."""
        path = self.cfg.run.health_file
        now = time.monotonic()
        if not path or now - self._last_heartbeat < 1.0:
            return
        self._last_heartbeat = now
        try:
            with open(path, "a"):
                os.utime(path)
        except OSError as exc:
            log.warning("cannot write health file", extra={"fields": {"path": path, "error": str(exc)}})

    def _report_stats(self, window: _Window) -> None:
        fields = {
            "uptime_s": round(time.monotonic() - self._started, 1),
            "fps": round(window.fps(time.monotonic()), 2),
            "inference_ms": round(window.mean_ms(), 2),
            "frames": self.frames,
            "dropped_frames": self.source.dropped,
            "source_queue": self.source.queue_depth,
            "errors": self.errors,
            "model_id": self.detector.model_id,
        }
        log.info("stats", extra={"fields": fields})
        if self.reporter is not None:
            self.reporter.stats(fields)

    def _shutdown(self, reason: str, last_index: int, last_size: tuple[int, int]) -> None:
        self.watcher.stop()
        self.source.stop()
        if self._writer is not None:
            try:
                self._writer.close()
            except (OSError, SqueezeDetError) as exc:  # the debug video must not cost the offline message
                log.error("annotated video not written", extra={"fields": {"error": str(exc)}})
        ended = self.tracker.flush()
        if self.reporter is not None:
            self.reporter.end(ended, last_index, last_size, self.detector.model_id)
            self.publisher.close()
        elapsed = time.monotonic() - self._started
        log.info("stopped", extra={"fields": {
            "reason": reason, "frames": self.frames, "fps": round(self.frames / max(elapsed, 1e-9), 2),
            "dropped_frames": self.source.dropped, "errors": self.errors,
            "mqtt_dropped": self.publisher.dropped if self.publisher else 0}})

    # -- callbacks from other threads ----------------------------------------------------------
    def _on_source_status(self, state: str, detail: str) -> None:
        if self.reporter is not None:
            self.reporter.status(state=state, detail=detail)

    def _on_command(self, command: dict, topic: str) -> None:
        action = command["action"]
        log.info("command", extra={"fields": {"topic": topic, "action": action}})
        if action == "reload_model":
            self.watcher.request_reload()
        else:
            log.warning("unknown command action", extra={"fields": {"action": action}})

    def _on_model_loaded(self, detector: Detector) -> None:
        self.detector = detector  # atomic reference swap; the old model is freed after its last frame
        if self.reporter is not None:
            self.reporter.set_labels(detector.class_names)
            self.reporter.status(model_id=detector.model_id, model_error=None)

    def _on_model_rejected(self, reason: str) -> None:
        if self.reporter is not None:
            self.reporter.status(model_error=reason)


class _Window:
    """Frames and inference time since the last stats message."""

    def __init__(self, start: float):
        self.start = start
        self.frames = 0
        self.total_ms = 0.0

    def add(self, inference_ms: float) -> None:
        self.frames += 1
        self.total_ms += inference_ms

    def fps(self, now: float) -> float:
        return self.frames / max(now - self.start, 1e-9)

    def mean_ms(self) -> float:
        return self.total_ms / self.frames if self.frames else 0.0


# -- logging ---------------------------------------------------------------------------------------
def _record_fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict:
    fields = {
        "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
        **(getattr(record, "fields", None) or {}),
    }
    if record.exc_info:
        fields["exc"] = formatter.formatException(record.exc_info)
    return fields


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=info logger=pipeline.sources msg="source lost" camera=front``"""

    def format(self, record):
        parts = []
        for key, value in _record_fields(record, self).items():
            text = str(value)
            if not text or any(c in text for c in ' ="\n'):
                text = json.dumps(text)
            parts.append(f"{key}={text}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (for journald/Loki/Elasticsearch)."""

    def format(self, record):
        return json.dumps(_record_fields(record, self), default=str)


def configure_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    handler.squeezedet_edge = True
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "squeezedet_edge", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    try:  # OpenCV's own warnings (e.g. a missing /dev/video0) would bypass the formatter
        import cv2

        cv2.utils.logging.setLogLevel(
            cv2.utils.logging.LOG_LEVEL_DEBUG if level == "DEBUG" else cv2.utils.logging.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):
        pass


# -- command line ------------------------------------------------------------------------------
def check_config(cfg: EdgeConfig, path: str) -> str:
    """Validate what can be validated without a camera or broker: the model, and a file source."""
    det = Detector.from_config(cfg.model)
    kind = source_kind(cfg.source.uri, cfg.source.backend)
    if kind in ("file", "folder"):
        probe = FrameSource(cfg.source, cfg.camera.name)
        probe.open()
        probe.stop()
    mqtt = f"{cfg.mqtt.host}:{cfg.mqtt.port}" if cfg.mqtt.enabled else "disabled"
    return (f"{path}: OK (camera={cfg.camera.name} source={kind} model={det.model_id} "
            f"input={det.meta.input_width}x{det.meta.input_height} classes={','.join(det.class_names)} mqtt={mqtt})")


def healthcheck(cfg: EdgeConfig, path: str) -> tuple[bool, str]:
    """Healthy when run.health_file was touched within run.health_max_age_s (for Docker/systemd)."""
    hf = cfg.run.health_file
    if not hf:
        return False, f"{path}: run.health_file is not set, nothing to check"
    try:
        age = time.time() - os.stat(hf).st_mtime
    except FileNotFoundError:
        return False, f"{hf}: no heartbeat yet (no frame processed)"
    if age > cfg.run.health_max_age_s:
        return False, f"{hf}: last frame {age:.0f} s ago (limit {cfg.run.health_max_age_s:.0f} s)"
    return True, f"{hf}: healthy, last frame {age:.1f} s ago"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="squeezedet-edge", description="SqueezeDet edge daemon: camera -> TFLite -> MQTT")
    p.add_argument("--config", required=True, help="edge YAML config (see configs/edge*.yaml)")
    p.add_argument("--check-config", action="store_true", help="validate config, model and file source, then exit")
    p.add_argument("--healthcheck", action="store_true",
                   help="exit 0 if run.health_file shows a frame within run.health_max_age_s, else 1")
    p.add_argument("--max-frames", type=_positive_int, default=None, help="override run.max_frames")
    p.add_argument("--log-format", choices=("kv", "json"), default=None, help="override logging.format")
    p.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default=None)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_edge_config(args.config)
        if args.max_frames is not None:
            cfg.run.max_frames = args.max_frames
        configure_logging(args.log_format or cfg.logging.format, args.log_level or cfg.logging.level)
        if args.check_config:
            print(check_config(cfg, args.config))
            return 0
        if args.healthcheck:
            ok, message = healthcheck(cfg, args.config)
            print(message, file=sys.stdout if ok else sys.stderr)
            return 0 if ok else 1
        daemon = Daemon(cfg)
    except SqueezeDetError as exc:
        print(f"squeezedet-edge: error: {exc}", file=sys.stderr)
        return 2
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: daemon.stop())
    try:
        return daemon.run()
    except Exception:
        log.exception("daemon crashed")
        return 1

