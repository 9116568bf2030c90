"""The edge daemon: N cameras on one detector.

Each camera runs its own source thread (capture) and frame thread (filters -> shared detector ->
tracker -> zones/lines/snapshots -> report); one inference thread serves all cameras round-robin
(pipeline.scheduler), and one MQTT publisher thread carries every camera's messages, so network
trouble costs no frame loop anything and one camera's trouble costs the others nothing. With
``http.enabled`` an HTTP server (pipeline.web, its own thread) shows the cameras to an operator.
``squeezedet-edge --config edge.yaml`` runs until SIGTERM or SIGINT (finish the frames, end open
tracks, publish ``offline``, flush, exit 0), or until every camera has finished (``run.max_frames``
frames each, or the end of a non-looping file with ``run.stop_at_end``).

Exit status: 0 normal stop, 2 a user error (config, model, source; one line on stderr), 1 a bug.
Logs go to stdout as key=value or JSON lines (pipeline.logs); stderr is kept for the fatal one-liner.
``--check-config`` and ``--healthcheck`` (pipeline.health) answer without starting anything.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from pipeline.camera import CameraWorker, LatestFrame, camera_video_path  # noqa: F401 - LatestFrame: API
from pipeline.config import EdgeConfig, load_edge_config
from pipeline.detector import Detector, ModelWatcher
from pipeline.health import Heartbeat, healthcheck
from pipeline.lines import CountStore
from pipeline.logs import configure_logging
from pipeline.mqtt import OFFLINE, ONLINE, DaemonTopics, MqttPublisher
from pipeline.payloads import daemon_stats
from pipeline.scheduler import SharedDetector
from pipeline.sources import FrameSource, Opener, source_kind
from squeezedet.errors import SqueezeDetError

log = logging.getLogger("pipeline.daemon")


class Daemon:
    """All cameras of a config on one detector. Construction opens the file sources and loads the model
    once (errors are SqueezeDetError); ``run()`` blocks until a stop condition and returns the exit status.

    ``opener`` replaces OpenCV for every camera (tests), or maps camera name -> opener."""

    def __init__(self, cfg: EdgeConfig, opener: Opener | dict[str, Opener] | None = None):
        import cv2

        self.cfg = cfg
        cv2.setNumThreads(cfg.run.opencv_threads or -1)  # process-wide (the daemon is its own process); -1: default
        self._stop = threading.Event()
        self._started = time.monotonic()
        self.heartbeat = Heartbeat(cfg.run.health_file)
        self._last_stats = time.monotonic()
        self.publisher: MqttPublisher | None = None
        self.http = None  #: pipeline.web.HttpServer while running with http.enabled
        names = list(cfg.cameras)
        self.topics = DaemonTopics(cfg.mqtt.prefix)
        self._commands = self.topics.commands(names)  # command topic -> its camera (None: all)
        if cfg.mqtt.enabled:
            ha = cfg.mqtt.home_assistant
            subscriptions = {self.topics.ha_status(ha): self._on_ha_status} if ha.enabled else {}
            default_id = f"squeezedet-edge-{names[0]}" if len(names) == 1 else f"squeezedet-edge-{cfg.mqtt.prefix}"
            self.publisher = MqttPublisher(cfg.mqtt, cfg.mqtt.client_id or default_id, self.topics.availability,
                                           self._commands, self._on_command, subscriptions)
        has_lines = any(cam.lines for cam in cfg.cameras.values())
        self.store = CountStore(cfg.run.state_file) if has_lines and cfg.run.state_file else None
        if has_lines and self.store is None:
            log.warning("run.state_file is not set: line counts start from zero after a restart")
        self.cameras: dict[str, CameraWorker] = {}
        self.shared: SharedDetector | None = None
        several = len(names) > 1
        # Sources before the model: an unreadable video fails fast, with nothing else on stderr.
        opened: list[CameraWorker] = []
        try:
            for name, cam in cfg.cameras.items():
                cam_opener = opener.get(name) if isinstance(opener, dict) else opener
                worker = CameraWorker(cam, cfg.mqtt, cfg.run, None, self.publisher, self.store, cam_opener,
                                      camera_video_path(cfg.run.output_video, name, several))
                worker.open()
                opened.append(worker)
                self.cameras[name] = worker
            detector = Detector.from_config(cfg.model)
        except SqueezeDetError:
            for worker in opened:
                worker.source.stop()
            raise
        self.shared = SharedDetector(detector, names)
        for worker in self.cameras.values():
            worker.attach(self.shared)
        self.watcher = ModelWatcher(cfg.model, self._on_model_loaded, self._on_model_rejected)

    # -- compatibility with the one-camera daemon --------------------------------------------------
    @property
    def detector(self) -> Detector:
        return self.shared.detector

    @property
    def frames(self) -> int:
        """Frames processed, all cameras together."""
        return sum(w.frames for w in self.cameras.values())

    @property
    def errors(self) -> int:
        return sum(w.errors for w in self.cameras.values())

    def stop(self) -> None:
        """Ask every camera to finish its current frame and shut down (thread- and signal-safe)."""
        self._stop.set()

    # -- main loop -----------------------------------------------------------------------------
    def run(self) -> int:
        det = self.detector
        log.info("starting", extra={"fields": {
            "cameras": ",".join(self.cameras), "sources": ",".join(w.source.kind for w in self.cameras.values()),
            "model_id": det.model_id, "runtime": det.runtime,
            "input": f"{det.meta.input_width}x{det.meta.input_height}",
            "classes": ",".join(det.class_names), "mqtt": self.cfg.mqtt.enabled}})
        if self.publisher is not None:
            self.publisher.set_state(self.topics.availability, ONLINE)
        for worker in self.cameras.values():
            worker.model_changed(det.model_id)
        if self.publisher is not None:
            self.publisher.start()
        self.shared.start()
        for worker in self.cameras.values():
            worker.start()
        self.watcher.start()
        try:
            if self.cfg.http.enabled:  # after the cameras: the page has something to show from the start
                from pipeline.web import HttpServer

                self.http = HttpServer(self, self.cfg.http)
                self.http.start()
            while not self._stop.is_set():
                if all(w.finished.is_set() for w in self.cameras.values()):
                    break
                self._stop.wait(0.1)
                self._heartbeat()
                if time.monotonic() - self._last_stats >= self.cfg.mqtt.stats_interval_s:
                    self._report_stats()
        finally:
            self._shutdown()
        return 0

    def stats(self) -> dict:
        """Daemon-wide figures and every camera's stats (what ``P/stats`` carries)."""
        cams = {name: w.stats() for name, w in self.cameras.items()}
        frames_window = [c for c in cams.values() if c["fps"] > 0]
        det = self.detector
        pub = self.publisher
        return {
            "uptime_s": round(time.monotonic() - self._started, 1),
            "fps": round(sum(c["fps"] for c in cams.values()), 2),
            "inference_ms": round(sum(c["inference_ms"] * c["fps"] for c in frames_window)
                                  / max(sum(c["fps"] for c in frames_window), 1e-9), 2) if frames_window else 0.0,
            "frames": sum(c["frames"] for c in cams.values()),
            "dropped_frames": sum(c["dropped_frames"] for c in cams.values()),
            "source_queue": sum(c["source_queue"] for c in cams.values()),
            "errors": sum(c["errors"] for c in cams.values()),
            "model_id": det.model_id,
            "runtime": det.runtime,
            "mqtt": {"enabled": pub is not None, "connected": bool(pub and pub.connected),
                     "queue_depth": pub.queue_depth if pub else 0, "dropped": pub.dropped if pub else 0},
            "cameras": cams,
        }

    def _report_stats(self) -> None:
        self._last_stats = time.monotonic()
        stats = self.stats()
        for name, worker in self.cameras.items():
            fields = stats["cameras"][name]
            log.info("stats", extra={"fields": {"camera": name, **fields}})
            worker.reporter.stats(fields)
        pub = self.publisher
        if pub is not None:
            pub.publish(self.topics.stats, daemon_stats(stats, time.time(), pub.queue_depth, pub.cfg.queue_size,
                                                        pub.dropped, pub.connected), retain=self.cfg.mqtt.retain)

    def _heartbeat(self, now: bool = False) -> None:
        self.heartbeat.beat({name: w.last_frame_time for name, w in self.cameras.items()}, now)

    def _shutdown(self) -> None:
        reason = "stopped"
        if not self._stop.is_set():
            reasons = {w.reason for w in self.cameras.values()}
            reason = reasons.pop() if len(reasons) == 1 else "every camera finished"
        if self.http is not None:  # first: viewers' streams end, /healthz stops answering
            self.http.stop()
        for worker in self.cameras.values():
            worker.stop()
        deadline = time.monotonic() + 10.0  # one deadline for all cameras, not 10 s each
        for worker in self.cameras.values():
            worker.join(max(0.0, deadline - time.monotonic()))
        self.watcher.stop()
        self.shared.stop()
        self._heartbeat(now=True)
        self._report_stats()  # the final figures, also for runs shorter than stats_interval_s
        for worker in self.cameras.values():
            if worker.is_alive():  # its last frame is still running: flushing its tracker now would race it
                log.warning("camera did not stop in time; its open tracks are not ended",
                            extra={"fields": {"camera": worker.name}})
                continue
            worker.shutdown()
        if self.publisher is not None:
            self.publisher.set_state(self.topics.availability, OFFLINE)
            self.publisher.close()
        elapsed = time.monotonic() - self._started
        frames = self.frames
        log.info("stopped", extra={"fields": {
            "reason": reason, "frames": frames, "fps": round(frames / max(elapsed, 1e-9), 2),
            "dropped_frames": sum(w.source.dropped for w in self.cameras.values()), "errors": self.errors,
            "mqtt_dropped": self.publisher.dropped if self.publisher else 0}})

    # -- callbacks from other threads ----------------------------------------------------------
    def _on_command(self, command: dict, topic: str) -> None:
        action = command["action"]
        camera = self._commands.get(topic)
        log.info("command", extra={"fields": {"topic": topic, "action": action}})
        if action == "reload_model":
            self.watcher.request_reload()
        elif action == "reset_counts":
            targets = [self.cameras[camera]] if camera in self.cameras else list(self.cameras.values())
            line = command.get("line") if isinstance(command.get("line"), str) else None
            for worker in targets:
                worker.reset_counts(line)
        else:
            log.warning("unknown command action", extra={"fields": {"action": action}})

    def _on_ha_status(self, payload: bytes) -> None:
        """Home Assistant (re)started: send discovery first, then every retained state."""
        if payload.strip().lower() == b"online" and self.publisher is not None:
            log.info("home assistant online, re-sending discovery and states")
            self.publisher.resend_state(first=self.topics.ha_discovery_root(self.cfg.mqtt.home_assistant))

    def _on_model_loaded(self, detector: Detector) -> None:
        self.shared.swap(detector)  # atomic reference swap; the old model is freed after its last frame
        for worker in self.cameras.values():
            worker.model_changed(detector.model_id)

    def _on_model_rejected(self, reason: str) -> None:
        for worker in self.cameras.values():
            worker.model_changed("", error=reason)


# -- command line ------------------------------------------------------------------------------
def check_config(cfg: EdgeConfig, path: str) -> str:
    """Validate what can be validated without a camera or broker: the model, and file sources."""
    det = Detector.from_config(cfg.model)
    kinds = []
    for name, cam in cfg.cameras.items():
        kind = source_kind(cam.source.uri, cam.source.backend)
        kinds.append(kind)
        if kind in ("file", "folder"):
            probe = FrameSource(cam.source, name)
            probe.open()
            probe.stop()
    mqtt = f"{cfg.mqtt.host}:{cfg.mqtt.port}" if cfg.mqtt.enabled else "disabled"
    http = ""
    if cfg.http.enabled:
        http = f" http={cfg.http.bind}:{cfg.http.port} auth={'token' if cfg.http.token else 'none'}"
    return (f"{path}: OK (camera={','.join(cfg.cameras)} source={','.join(kinds)} model={det.model_id} "
            f"input={det.meta.input_width}x{det.meta.input_height} classes={','.join(det.class_names)} mqtt={mqtt}"
            f"{http})")


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
                   help="exit 0 if the daemon's /healthz answers 200 (http.enabled) or run.health_file shows a "
                        "frame within run.health_max_age_s, else 1")
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
    except SqueezeDetError as exc:  # e.g. http.port already taken: the cameras were stopped cleanly
        print(f"squeezedet-edge: error: {exc}", file=sys.stderr)
        return 2
    except Exception:
        log.exception("daemon crashed")
        return 1

