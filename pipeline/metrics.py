"""Prometheus metrics for the edge daemon, read at scrape time.

The frame loop does not know Prometheus exists: counters, gauges and counts are read from the daemon's
own figures (``pipeline.views.DaemonView``: ``stats()``, each camera's ``stats()`` / ``counts()``) when
``/metrics`` is scraped,
by a custom collector. The one per-frame figure, inference latency, goes into a ``LatencyHistogram``
(a few integer increments per frame) that the collector exports as a Prometheus histogram.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator

from prometheus_client import ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from pipeline.views import DaemonView

#: Upper bounds in seconds: a Pi runs SqueezeDet in 30-300 ms, a desktop CPU or a delegate in 5-30 ms.
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)


class LatencyHistogram:
    """Cumulative-on-read histogram of durations; ``observe()`` is called from one frame loop."""

    def __init__(self, buckets=LATENCY_BUCKETS):
        self.buckets = tuple(float(b) for b in buckets)
        self._counts = [0] * (len(self.buckets) + 1)  # last slot: above the largest bound (+Inf)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(self.buckets, seconds)  # le semantics: a value equal to a bound counts in it
        with self._lock:
            self._counts[i] += 1
            self._sum += seconds

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        """([(le, cumulative count)...] ending with "+Inf", sum) as Prometheus wants them."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        out, running = [], 0
        for bound, n in zip([*map(_le, self.buckets), "+Inf"], counts):
            running += n
            out.append((bound, running))
        return out, total


def _le(bound: float) -> str:
    return repr(bound) if bound != int(bound) else f"{bound:.1f}"


class DaemonCollector(Collector):
    """Everything ``/metrics`` shows, built from one read of the daemon's figures per scrape."""

    def __init__(self, daemon: DaemonView):
        self.daemon = daemon

    def collect(self) -> Iterator:
        daemon = self.daemon
        wide = daemon.stats()
        frames = CounterMetricFamily("squeezedet_frames", "Frames processed", labels=["camera"])
        dropped = CounterMetricFamily("squeezedet_dropped_frames",
                                      "Live frames overwritten before the detector took them", labels=["camera"])
        errors = CounterMetricFamily("squeezedet_errors", "Frames whose processing failed", labels=["camera"])
        fps = GaugeMetricFamily("squeezedet_fps", "Processed frames per second over the last stats period",
                                labels=["camera"])
        age = GaugeMetricFamily("squeezedet_last_frame_age_seconds", "Seconds since the newest processed frame",
                                labels=["camera"])
        latency = HistogramMetricFamily("squeezedet_inference_seconds", "Detector inference time per frame",
                                        labels=["camera"])
        objects = GaugeMetricFamily("squeezedet_objects", "Confirmed objects in the newest frame",
                                    labels=["camera", "label"])
        zones = GaugeMetricFamily("squeezedet_zone_objects", "Confirmed objects inside a zone",
                                  labels=["camera", "zone", "label"])
        lines = CounterMetricFamily("squeezedet_line_crossings", "Objects that crossed a counting line",
                                    labels=["camera", "line", "label", "direction"])
        model = InfoMetricFamily("squeezedet_model", "The model each camera runs", labels=["camera"])
        now = time.monotonic()
        for name, worker in daemon.cameras.items():
            stats = wide.get("cameras", {}).get(name) or worker.stats()
            frames.add_metric([name], stats.get("frames", 0))
            dropped.add_metric([name], stats.get("dropped_frames", 0))
            errors.add_metric([name], stats.get("errors", 0))
            fps.add_metric([name], stats.get("fps", 0.0))
            latest = worker.latest()
            age.add_metric([name], now - latest.monotonic if latest is not None else float("nan"))
            buckets, total = worker.latency.snapshot()
            latency.add_metric([name], buckets, total)
            counts = worker.counts()
            known = list(counts.get("labels", {}))  # every class of the model: series never vanish
            for label, n in counts.get("labels", {}).items():
                objects.add_metric([name, label], n)
            for zone, per_label in counts.get("zones", {}).items():
                for label in [*known, *(lab for lab in per_label if lab not in known)]:
                    zones.add_metric([name, zone, label], per_label.get(label, 0))
            for line, per_label in counts.get("lines", {}).items():
                for label, both in per_label.items():
                    for direction in ("in", "out"):
                        lines.add_metric([name, line, label, direction], both.get(direction, 0))
            model.add_metric([name], {"model_id": str(stats.get("model_id") or wide.get("model_id") or ""),
                                      "runtime": str(wide.get("runtime") or wide.get("backend") or "")})
        yield from (frames, dropped, errors, fps, age, latency, objects, zones, lines, model)
        yield GaugeMetricFamily("squeezedet_uptime_seconds", "Seconds since the daemon started",
                                value=wide.get("uptime_s", 0.0))
        mqtt = wide.get("mqtt") or {}
        yield GaugeMetricFamily("squeezedet_mqtt_connected", "1 while connected to the broker (0 also when disabled)",
                                value=float(bool(mqtt.get("connected"))))
        yield GaugeMetricFamily("squeezedet_mqtt_queue_depth", "Messages waiting for the broker",
                                value=mqtt.get("queue_depth", 0))
        yield CounterMetricFamily("squeezedet_mqtt_dropped", "Messages dropped because the queue was full",
                                  value=mqtt.get("dropped", 0))


class HttpCollector(Collector):
    """What the operator's window itself costs: open live views, frames drawn and encoded for viewers
    and the CPU time that took (``pipeline.web.HttpServer``)."""

    def __init__(self, server):
        self.server = server

    def collect(self) -> Iterator:
        caches = self.server.caches
        yield GaugeMetricFamily("squeezedet_http_viewers", "Open live views (MJPEG streams)",
                                value=self.server.viewers)
        encoded = CounterMetricFamily("squeezedet_http_encoded_frames", "Frames drawn and JPEG-encoded for viewers",
                                      labels=["camera"])
        cpu = CounterMetricFamily("squeezedet_http_encode_cpu_seconds", "CPU time spent drawing and encoding them",
                                  labels=["camera"])
        for name, cache in caches.items():
            encoded.add_metric([name], cache.encoded)
            cpu.add_metric([name], cache.cpu_seconds)
        yield encoded
        yield cpu


def daemon_registry(daemon: DaemonView, server=None) -> CollectorRegistry:
    """A private registry (not the process-wide default): several daemons in one process stay apart."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(daemon))
    if server is not None:
        registry.register(HttpCollector(server))
    ProcessCollector(registry=registry)  # CPU seconds, resident memory, open files of this process
    return registry
