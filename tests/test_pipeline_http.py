"""The HTTP server inside the real daemon: bundled model on the bundled clip, a real mosquitto, real
HTTP requests on a free loopback port. Every endpoint answers with the right content type and real
values; a wrong or missing token gets a 401 and nothing else; /healthz turns 503 when frames stop."""

from __future__ import annotations

import json
import socket

import cv2
import numpy as np
import pytest
from http_helpers import (
    CLIP_SIZE,
    MODEL,
    RunningDaemon,
    basic,
    bearer,
    clip_camera,
    clip_config,
    get,
    read_mjpeg,
    wait_until,
)
from pipeline_helpers import broker_fixture, free_port  # noqa: F401 - fixture
from prometheus_client.parser import text_string_to_metric_families

from pipeline.daemon import healthcheck, main

TOKEN = "pole-7-token"
MODEL_ID = json.loads(MODEL.with_suffix(".json").read_text())["model_id"]
pytestmark = pytest.mark.broker


def metric_samples(body: bytes) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}


def decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """One daemon for the module: camera 'highway' (looping clip at 10 fps), MQTT to a real broker,
    HTTP with a token from the environment."""
    from pipeline_helpers import Broker

    work = tmp_path_factory.mktemp("http_daemon")
    broker = Broker(work / "broker").start()
    cfg = clip_config(free_port(), {"highway": clip_camera()}, mqtt_port=broker.port)
    try:
        with RunningDaemon(cfg, work, env={"SQUEEZEDET_HTTP_TOKEN": TOKEN}) as d:
            auth = bearer(TOKEN)
            # wait for frames, a stats period (fps) and a few events (two cars' "new", updates, zone entries)
            assert wait_until(lambda: len(get(d.port, "/api/highway/events?limit=5", auth).json()["events"]) >= 3, 30)
            assert wait_until(lambda: get(d.port, "/api/stats", auth).json()["cameras"]["highway"]["fps"] > 0, 15)
            yield d
    finally:
        broker.stop()


def test_every_endpoint_answers_with_real_values(running):
    port, auth = running.port, bearer(TOKEN)

    page = get(port, "/", auth)
    assert page.status == 200 and page.content_type == "text/html; charset=utf-8"
    assert b'src="/static/app.js"' in page.body and b"http://" not in page.body and b"https://" not in page.body
    script = get(port, "/static/app.js", auth)
    assert script.status == 200 and script.content_type.startswith("text/javascript")
    assert b"https://" not in script.body  # no CDN: the page works without internet

    stats = get(port, "/api/stats", auth)
    assert stats.status == 200 and stats.content_type == "application/json; charset=utf-8"
    s = stats.json()
    cam = s["cameras"]["highway"]
    assert s["model_id"] == cam["model_id"] == MODEL_ID
    assert s["mqtt"] == {**s["mqtt"], "enabled": True, "connected": True}
    assert cam["frames"] > 0 and cam["fps"] > 0 and cam["inference_ms"] > 0
    assert cam["source_state"] == "online" and set(cam["counts"]) == {"labels", "zones", "lines"}
    assert set(cam["counts"]["labels"]) == {"car", "pedestrian", "cyclist"}

    cams = get(port, "/api/cameras", auth).json()
    (info,) = cams["cameras"]
    assert info["name"] == "highway" and (info["width"], info["height"]) == CLIP_SIZE
    assert info["source"].endswith("highway_dashcam.mp4") and info["model_id"] == MODEL_ID
    road = info["geometry"]["zones"]["road"]  # normalised in the config, frame pixels here
    assert road[0] == [0.5 * 1280, 0.5 * 720] and road[2] == [1280.0, 0.8 * 720]
    assert info["geometry"]["lines"]["gate"]["points"] == [[64.0, 612.0], [1216.0, 612.0]]

    latest = get(port, "/api/highway/latest.jpg", auth)
    raw = get(port, "/api/highway/latest.jpg?raw=1", auth)
    for r in (latest, raw):
        assert r.status == 200 and r.content_type == "image/jpeg"
        assert decode(r.body).shape == (CLIP_SIZE[1], CLIP_SIZE[0], 3)
    # the annotated frame carries the overlay: the counting line's row is amber in it, not in the raw frame
    drawn_row, raw_row = decode(latest.body)[612, 100:1200], decode(raw.body)[612, 100:1200]
    amber_bgr = np.array([0, 200, 255])
    assert np.abs(drawn_row.astype(int) - amber_bgr).max(axis=1).mean() < 40
    assert np.abs(raw_row.astype(int) - amber_bgr).max(axis=1).mean() > 60

    events = get(port, "/api/highway/events?limit=3", auth)
    assert events.status == 200 and events.content_type == "application/json; charset=utf-8"
    evs = events.json()["events"]
    assert len(evs) == 3 and all(e["camera"] == "highway" and e["type"] for e in evs)
    assert [e["timestamp"] for e in evs] == sorted(e["timestamp"] for e in evs)  # newest last
    assert get(port, "/api/highway/events?limit=x", auth).status == 400

    health = get(port, "/healthz", auth)
    assert health.status == 200 and health.json()["cameras"]["highway"]["ok"] is True

    first = get(port, "/metrics", auth)
    assert first.status == 200 and first.content_type.startswith("text/plain; version=")
    before = metric_samples(first.body)
    key = ("squeezedet_frames_total", (("camera", "highway"),))
    assert wait_until(lambda: metric_samples(get(port, "/metrics", auth).body)[key] > before[key] + 2, 10)
    after = metric_samples(get(port, "/metrics", auth).body)
    assert after[("squeezedet_mqtt_connected", ())] == 1
    assert after[("squeezedet_model_info", (("camera", "highway"), ("model_id", MODEL_ID),
                                            ("runtime", s["runtime"])))] == 1
    hist = after[("squeezedet_inference_seconds_count", (("camera", "highway"),))]
    assert hist >= before[key] and after[("squeezedet_inference_seconds_sum", (("camera", "highway"),))] > 0
    assert ("squeezedet_line_crossings_total",
            (("camera", "highway"), ("direction", "in"), ("label", "car"), ("line", "gate"))) in after
    for label in ("car", "pedestrian", "cyclist"):  # every known label has its series, zero included
        assert after[("squeezedet_objects", (("camera", "highway"), ("label", label)))] >= 0
        assert after[("squeezedet_zone_objects", (("camera", "highway"), ("label", label), ("zone", "road")))] >= 0
    assert after[("squeezedet_objects", (("camera", "highway"), ("label", "pedestrian")))] == 0


def test_live_stream_sends_new_frames_of_the_camera(running):
    ctype, parts, _ = read_mjpeg(running.port, "/api/highway/stream.mjpeg", 3, basic("admin", TOKEN))
    assert ctype.startswith("multipart/x-mixed-replace")
    indexes = [int(h["x-frame-index"]) for h, _ in parts]
    assert indexes[0] < indexes[1] < indexes[2]
    # the live view is scaled to http.stream_height (480) rows, aspect kept: 1280 x 480 / 720 = 853.3
    assert all(decode(data).shape == (480, 853, 3) for _, data in parts)


@pytest.mark.parametrize("headers", [{}, bearer("pole-7-tokem"), basic("admin", "nope"), basic("root", TOKEN)],
                         ids=["missing", "wrong-bearer", "wrong-basic", "wrong-user"])
def test_wrong_or_missing_token_gets_401_and_nothing_else(running, headers):
    for path in ("/", "/static/app.js", "/api/stats", "/api/cameras", "/api/highway/latest.jpg",
                 "/api/highway/latest.jpg?raw=1", "/api/highway/events", "/api/highway/stream.mjpeg",
                 "/healthz", "/metrics", "/api/nope/events"):
        r = get(running.port, path, headers)
        assert (r.status, r.content_type, r.json()) == (401, "application/json; charset=utf-8",
                                                        {"error": "unauthorized"}), path
        assert not any(word in r.body for word in (b"highway", MODEL_ID.encode(), b"car"))


def test_healthz_turns_503_when_frames_stop(tmp_path):
    """A non-looping clip with stop_at_end off: frames flow for ~2 s, then stop; /healthz follows, and
    so does `squeezedet-edge --healthcheck`."""
    cam = clip_camera(loop=False, max_fps=20.0)
    cfg = clip_config(free_port(), {"highway": cam}, http={"health_max_age_s": 1.0, "token": TOKEN})
    with RunningDaemon(cfg, tmp_path) as d:
        assert wait_until(lambda: get(d.port, "/healthz", bearer(TOKEN)).status == 200, 15)
        ok, message = healthcheck(d.cfg, str(d.path))
        assert ok and message.endswith("healthy (1 camera(s) within 1.0 s)")
        def ended_and_stale():  # the clip's last frame is 37; a slow frame mid-clip may be stale too
            r = get(d.port, "/healthz", bearer(TOKEN))
            return r.status == 503 and r.json()["cameras"]["highway"]["frame"] == 37 and r

        stale = wait_until(ended_and_stale, 20)
        assert stale, "frames stopped but /healthz stayed 200"
        body = stale.json()
        assert body["status"] == "stale" and body["stale"] == ["highway"]
        assert body["cameras"]["highway"]["last_frame_age_s"] > 1.0
        ok, message = healthcheck(d.cfg, str(d.path))
        assert not ok and "stale: highway (last frame" in message


def test_check_config_names_the_http_server(tmp_path, capsys):
    import yaml

    port = free_port()
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(clip_config(port, {"highway": clip_camera()}, http={"token_file": str(
        tmp_path / "token")})))
    (tmp_path / "token").write_text("s3cret\n")
    assert main(["--config", str(path), "--check-config"]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith(f"mqtt=disabled http=127.0.0.1:{port} auth=token)") and "s3cret" not in out


def test_port_taken_is_a_one_line_error(tmp_path, capsys):
    import yaml

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = clip_config(port, {"highway": clip_camera(max_fps=None)})
        path = tmp_path / "edge.yaml"
        path.write_text(yaml.safe_dump(cfg))
        code = main(["--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"squeezedet-edge: error: http.port: cannot listen on 127.0.0.1:{port} (")
