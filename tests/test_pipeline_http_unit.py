"""The HTTP server's own rules, on a small stand-in daemon whose frames and ages the test controls:
authentication, /healthz staleness, per-viewer rate limit, shared encodes, metric values, config."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest
from http_helpers import basic, bearer, get, read_mjpeg, wait_until
from pipeline_helpers import free_port
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import ENV_HTTP_TOKEN, EdgeConfig, HttpConfig, resolve_secrets
from pipeline.metrics import LatencyHistogram
from pipeline.tracker import TrackedObject
from pipeline.web import HttpServer
from pipeline.web.server import redact_uri
from squeezedet.errors import ConfigError

TOKEN = "correct-horse-battery"


@dataclass
class Frame:
    image: np.ndarray
    index: int
    timestamp: float
    objects: list
    monotonic: float


@dataclass
class FakeCamera:
    """Implements the reading side of CameraWorker that the server uses."""

    name: str
    frame: Frame | None = None
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    source_uri: str | None = None

    def latest(self):
        return self.frame

    def stats(self):
        return {"fps": 12.5, "inference_ms": 20.0, "frames": 7, "dropped_frames": 1, "errors": 0,
                "state": "online", "model_id": "fake"}

    def counts(self):
        return {"labels": {"car": 2}, "zones": {"road": {"car": 1}},
                "lines": {"gate": {"car": {"in": 3, "out": 1}}}}

    def geometry(self):
        return {"width": 256, "height": 128, "zones": {"road": [[8, 8], [120, 8], [120, 60], [8, 60]]},
                "masks": [[[200, 0], [255, 0], [255, 30]]],
                "lines": {"gate": {"points": [[0, 100], [255, 100]], "in_direction": "down"}}}

    def recent_events(self, limit=50):
        return [{"type": "new", "n": i} for i in range(3)][-limit:]

    def show(self, index: int, age_s: float = 0.0):
        img = np.full((128, 256, 3), index % 256, np.uint8)
        obj = TrackedObject(4, "car", 0.9, 0.85, (40.0, 30.0, 100.0, 90.0), 0, 0, index)
        self.frame = Frame(img, index, time.time(), [obj], time.monotonic() - age_s)


class FakeDaemon:
    publisher = None

    def __init__(self, *names):
        self.cameras = {n: FakeCamera(n) for n in names}

    def stats(self):
        return {"uptime_s": 3.0, "model_id": "fake", "mqtt": {"enabled": False},
                "cameras": {n: c.stats() for n, c in self.cameras.items()}}


@pytest.fixture
def serve():
    servers = []

    def start(daemon, **http):
        server = HttpServer(daemon, HttpConfig(**{"enabled": True, "port": free_port(), **http}))
        server.start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


ENDPOINTS = ["/", "/static/app.js", "/api/stats", "/api/cameras", "/api/front/latest.jpg",
             "/api/front/latest.jpg?raw=1", "/api/front/events", "/api/front/stream.mjpeg", "/healthz",
             "/metrics", "/api/nosuchcam/latest.jpg", "/nosuchpath"]


def test_every_path_needs_the_token_and_a_refusal_leaks_nothing(serve):
    daemon = FakeDaemon("front")
    daemon.cameras["front"].show(5)
    server = serve(daemon, token=TOKEN, username="op")
    wrong = [{}, bearer("nope"), bearer(TOKEN + "x"), basic("op", "nope"), basic("other", TOKEN),
             {"Authorization": TOKEN}, {"Authorization": "Basic !!notbase64"}]
    for path in ENDPOINTS:
        for headers in wrong:
            r = get(server.port, path, headers)
            assert r.status == 401, (path, headers)
            assert r.json() == {"error": "unauthorized"}
            assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
            assert b"front" not in r.body and b"fake" not in r.body
    for headers in (bearer(TOKEN), basic("op", TOKEN)):
        assert get(server.port, "/api/front/events", headers).json()["events"][-1] == {"type": "new", "n": 2}
    assert get(server.port, "/nosuchpath", bearer(TOKEN)).status == 404
    assert get(server.port, "/api/nosuchcam/latest.jpg", bearer(TOKEN)).status == 404


def test_no_token_means_open(serve):
    daemon = FakeDaemon("front")
    daemon.cameras["front"].show(1)
    server = serve(daemon)
    r = get(server.port, "/api/front/latest.jpg?raw=1")
    assert r.status == 200 and r.content_type == "image/jpeg"
    raw = cv2.imdecode(np.frombuffer(r.body, np.uint8), cv2.IMREAD_COLOR)
    assert raw.shape == (128, 256, 3) and abs(int(raw.mean()) - 1) <= 1  # the uniform frame, undrawn
    drawn = cv2.imdecode(np.frombuffer(get(server.port, "/api/front/latest.jpg").body, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == raw.shape and np.abs(drawn.astype(int) - raw).mean() > 2  # boxes, zone, line


def test_healthz_names_the_stale_camera(serve):
    daemon = FakeDaemon("front", "back")
    server = serve(daemon, health_max_age_s=2.0)
    r = get(server.port, "/healthz")
    assert r.status == 503 and r.json()["stale"] == ["front", "back"]  # no frame yet
    daemon.cameras["front"].show(10)
    daemon.cameras["back"].show(20, age_s=5.0)
    r = get(server.port, "/healthz")
    body = r.json()
    assert r.status == 503 and body["status"] == "stale" and body["stale"] == ["back"]
    assert body["cameras"]["front"]["ok"] and body["cameras"]["back"]["last_frame_age_s"] >= 5.0
    daemon.cameras["back"].show(21)
    r = get(server.port, "/healthz")
    assert r.status == 200 and r.json() == {**r.json(), "status": "ok", "stale": []}


def test_stream_is_rate_limited_and_viewers_share_encodes(serve):
    """The camera makes ~100 frames/s; each viewer gets at most stream_fps of them, and two viewers
    cost (about) the encodes of one."""
    daemon = FakeDaemon("front")
    cam = daemon.cameras["front"]
    stop = threading.Event()

    def produce():
        i = 0
        while not stop.is_set():
            cam.show(i)
            i += 1
            time.sleep(0.01)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        server = serve(daemon, stream_fps=4.0)
        assert wait_until(lambda: cam.frame is not None, 5)
        results = []
        viewers = [threading.Thread(target=lambda: results.append(read_mjpeg(server.port, "/api/front/stream.mjpeg",
                                                                             9))) for _ in range(2)]
        for v in viewers:
            v.start()
        for v in viewers:
            v.join(30)
    finally:
        stop.set()
        producer.join(5)
    assert len(results) == 2
    for ctype, parts, seconds in results:
        assert ctype.startswith("multipart/x-mixed-replace; boundary=")
        # parts 2..9 go out on 7 consecutive ticks of 1/4 s (the first one right at connect): >= 1.75 s
        assert len(parts) == 9 and seconds >= 7 / 4.0 * 0.9
        indexes = [int(h["x-frame-index"]) for h, _ in parts]
        assert indexes == sorted(indexes) and len(set(indexes)) == 9  # newest frames, never repeated
        assert all(h["content-type"] == "image/jpeg" and int(h["content-length"]) == len(d) for h, d in parts)
        assert cv2.imdecode(np.frombuffer(parts[0][1], np.uint8), cv2.IMREAD_COLOR).shape == (128, 256, 3)
    # both viewers wake on the same ticks: 18 parts sent from about 9 encodes (18 without sharing; a tick
    # that one viewer serves late on a loaded machine costs one more)
    assert server.caches["front"].encoded <= 9 + 4
    assert wait_until(lambda: server.viewers == 0, 5)


def test_metrics_values(serve):
    daemon = FakeDaemon("front")
    cam = daemon.cameras["front"]
    cam.show(3)
    for seconds in (0.004, 0.012, 0.012, 3.0):
        cam.latency.observe(seconds)
    server = serve(daemon)
    assert get(server.port, "/api/front/latest.jpg").status == 200  # one frame drawn and encoded
    assert get(server.port, "/api/front/latest.jpg").status == 200  # the same frame: served from the cache
    r = get(server.port, "/metrics")
    assert r.status == 200 and r.content_type.startswith("text/plain; version=")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(r.body.decode()) for s in fam.samples}
    front = (("camera", "front"),)
    assert samples[("squeezedet_frames_total", front)] == 7
    assert samples[("squeezedet_dropped_frames_total", front)] == 1
    assert samples[("squeezedet_fps", front)] == 12.5
    buckets = {le: samples[("squeezedet_inference_seconds_bucket", (("camera", "front"), ("le", le)))]
               for le in ("0.005", "0.01", "0.02", "2.5", "+Inf")}
    assert buckets == {"0.005": 1, "0.01": 1, "0.02": 3, "2.5": 3, "+Inf": 4}
    assert samples[("squeezedet_inference_seconds_count", front)] == 4
    assert samples[("squeezedet_inference_seconds_sum", front)] == pytest.approx(3.028)
    assert samples[("squeezedet_objects", (("camera", "front"), ("label", "car")))] == 2
    assert samples[("squeezedet_zone_objects", (("camera", "front"), ("label", "car"), ("zone", "road")))] == 1
    line = (("camera", "front"), ("direction", "in"), ("label", "car"), ("line", "gate"))
    assert samples[("squeezedet_line_crossings_total", line)] == 3
    assert samples[("squeezedet_mqtt_connected", ())] == 0
    assert samples[("squeezedet_http_viewers", ())] == 0
    assert samples[("squeezedet_http_encoded_frames_total", front)] == 1
    assert 0 < samples[("squeezedet_http_encode_cpu_seconds_total", front)] < 1
    assert samples[("squeezedet_model_info", (("camera", "front"), ("model_id", "fake"), ("runtime", "")))] == 1


def test_port_in_use_is_a_config_error(serve):
    daemon = FakeDaemon("front")
    first = serve(daemon)
    with pytest.raises(ConfigError, match=rf"^http.port: cannot listen on 127.0.0.1:{first.port} \("):
        serve(daemon, port=first.port)


def test_token_from_env_then_file_then_yaml(tmp_path):
    base = {"source": {"uri": "0"}, "model": {"path": "m.tflite"}}
    secret = tmp_path / "token"
    secret.write_text("from-file\n")

    def token(env, **http):
        return resolve_secrets(EdgeConfig.model_validate({**base, "http": http}), env).http.token

    assert token({}, token="from-yaml") == "from-yaml"
    assert token({}, token="from-yaml", token_file=str(secret)) == "from-file"
    assert token({ENV_HTTP_TOKEN: "from-env"}, token_file=str(secret)) == "from-env"
    assert token({}) is None
    with pytest.raises(ConfigError, match="http.token_file: cannot read"):
        token({}, token_file=str(tmp_path / "missing"))


def test_stream_credentials_are_redacted():
    assert redact_uri("rtsp://viewer:s3cret@cam.local:554/stream") == "rtsp://***@cam.local:554/stream"
    assert redact_uri("/media/clip.mp4") == "/media/clip.mp4"
    # passwords holding '@' or '/', credentials in the query, URLs inside error messages
    assert redact_uri("rtsp://user:p@ss@host/x") == "rtsp://***@host/x"
    assert redact_uri("rtsp://user:pa/ss@host/x") == "rtsp://***@host/x"
    assert redact_uri("http://cam/video.cgi?user=admin&pwd=secret&res=720") == \
        "http://cam/video.cgi?user=admin&pwd=***&res=720"
    assert redact_uri("cannot open rtsp://a:b@h/x (timeout)") == "cannot open rtsp://***@h/x (timeout)"


def test_overlay_draws_zones_lines_and_tracks_where_the_geometry_says():
    from pipeline.web.frames import MASK_COLOUR, ZONE_COLOUR, draw_overlay

    cam = FakeCamera("front")
    cam.show(0)
    out = draw_overlay(cam.frame, cam.geometry(), cam.counts())
    assert out is not cam.frame.image and int(cam.frame.image.max()) == 0  # the shared frame is untouched
    assert tuple(out[35, 8]) == ZONE_COLOUR  # left edge of zone "road" (x = 8), halfway down
    assert tuple(out[100, 150]) == ZONE_COLOUR  # counting line "gate" at y = 100
    r, g, b = out[0, 230]
    assert r == g == b and r > MASK_COLOUR[0] // 2  # the mask's top edge (grey, anti-aliased)
    assert tuple(out[60, 40]) != (0, 0, 0)  # the track's box edge at x = 40
    assert tuple(out[120, 20]) == (0, 0, 0)  # nothing drawn below the line on the left
    half = draw_overlay(cam.frame, cam.geometry(), cam.counts(), height=64)  # the live view's downscale
    assert half.shape == (64, 128, 3)
    assert tuple(half[50, 75]) == ZONE_COLOUR and tuple(half[17, 4]) == ZONE_COLOUR  # line y=50, zone x=4
    assert tuple(half[60, 10]) == (0, 0, 0)
