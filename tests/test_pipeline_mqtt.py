"""The daemon against a real mosquitto: schema, last will, broker outage, camera loss, model reload."""

import json
import logging
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from pipeline_helpers import (  # noqa: F401 - fixtures
    OPENSSL,
    RED,
    Broker,
    Collector,
    broker_fixture,
    car_video_fixture,
    cell_rect_frame,
    edge_config,
    expected_box,
    free_port,
    install_model,
    make_tls_files,
    run_in_thread,
    state_tail,
    tiny_model_fixture,
    tiny_models_fixture,
    write_config,
)

from pipeline.config import EdgeConfig, MqttConfig, TLSConfig
from pipeline.daemon import Daemon
from pipeline.mqtt import MqttPublisher
from pipeline.sources import SourceError

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[1]
P = "sd/test_cam"

OBJECT_KEYS = {"id", "label", "score", "smoothed_score", "box", "box_norm", "missed", "first_frame", "last_frame"}


def finish(thread, result, timeout=30):
    thread.join(timeout)
    assert not thread.is_alive(), "daemon did not stop"
    assert result == [0]


def test_publisher_queue_is_bounded_drops_oldest_and_delivers_after_reconnect(tmp_path):
    port = free_port()
    broker = Broker(tmp_path / "broker", port).start()
    # a persistent session, so the broker keeps messages for the collector while it is away
    Collector(port, ["t/#"], client_id="collector", clean_session=False).close()
    broker.stop()

    cfg = MqttConfig(host="127.0.0.1", port=port, queue_size=5, reconnect_min_s=1, reconnect_max_s=1,
                     flush_timeout_s=3)
    pub = MqttPublisher(cfg, "pub-test", "t/availability")
    pub.set_state("t/availability", "online")
    pub.start()
    try:
        for n in range(12):
            pub.publish("t/data", {"n": n}, qos=1)
            assert pub.queue_depth <= 5
        pub.publish("t/data", {"n": "qos0"}, qos=0)  # at most once: not kept while offline
        assert (pub.queue_depth, pub.dropped, pub.high_water, pub.connected) == (5, 7, 5, False)

        broker.start()
        collector = Collector(port, ["t/#"], client_id="collector", clean_session=False)
        assert collector.wait_for(lambda: len(collector.payloads("t/data")) >= 5)
        assert [m["n"] for m in collector.json("t/data")] == [7, 8, 9, 10, 11]  # the newest five, in order
        assert collector.wait_for(lambda: collector.last("t/availability") == "online")
        assert pub.queue_depth == 0 and pub.connected
        collector.close()
    finally:
        pub.set_state("t/availability", "offline")
        pub.close()
        broker.stop()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """The broker's CA + certificate, an unrelated CA that did not sign it, and a certificate that
    names only "localhost" (so connecting to 127.0.0.1 is a host name mismatch)."""
    if not Path(OPENSSL).is_file():
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    return (make_tls_files(folder, "broker"), make_tls_files(folder, "other"),
            make_tls_files(folder, "dnsonly", names="DNS:localhost"))


def warnings_of(caplog, message):
    return [r.fields for r in caplog.records if r.getMessage() == message]


UNREACHABLE = "mqtt broker unreachable, retrying in the background"


def unreachable_reason(caplog, cfg: MqttConfig, client_id: str, publishers: list) -> str:
    """Start a publisher that cannot connect; the reason its first warning gives (waits up to 10 s)."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.mqtt"):
        pub = MqttPublisher(cfg, client_id, "t/availability")
        publishers.append(pub)
        pub.start()
        deadline = time.monotonic() + 10
        while not warnings_of(caplog, UNREACHABLE) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not pub.connected
    return warnings_of(caplog, UNREACHABLE)[0]["reason"]


def tls_config(port, ca, **overrides) -> MqttConfig:
    return MqttConfig(host="127.0.0.1", port=port, username="edge", password="s3cret",
                      tls=TLSConfig(ca_certs=str(ca)), reconnect_min_s=1, reconnect_max_s=1, flush_timeout_s=2,
                      **overrides)


def test_tls_and_password_against_a_real_broker(tmp_path, tls_files, caplog):
    trusted, other, _ = tls_files
    broker = Broker(tmp_path / "broker", tls=trusted, users={"edge": "s3cret", "dashboard": "pw"}).start()
    cfg = tls_config(broker.port, trusted.ca)
    collector = Collector(broker.port, ["t/#"], ca=trusted.ca, auth=("dashboard", "pw"))
    publishers = []
    try:
        pub = MqttPublisher(cfg, "pub-tls", "t/availability")
        publishers.append(pub)
        pub.set_state("t/availability", "online")
        pub.start()
        pub.publish("t/data", {"n": 1}, qos=1)
        assert collector.wait_for(lambda: collector.json("t/data") == [{"n": 1}])
        assert collector.wait_for(lambda: collector.last("t/availability") == "online")

        with caplog.at_level(logging.WARNING, logger="pipeline.mqtt"):
            # the broker refuses a wrong password; the reason is logged and nothing gets through
            wrong = MqttPublisher(cfg.model_copy(update={"password": "wrong"}), "pub-wrong", "t/availability")
            # the certificate of the broker is not signed by the CA this client trusts
            untrusted = MqttPublisher(cfg.model_copy(update={"tls": TLSConfig(ca_certs=str(other.ca))}),
                                      "pub-untrusted", "t/availability")
            publishers += [wrong, untrusted]
            for p in (wrong, untrusted):
                p.start()
                p.publish("t/data", {"n": "must not arrive"}, qos=1)
            assert collector.wait_for(lambda: warnings_of(caplog, "mqtt connection refused")
                                      and warnings_of(caplog, UNREACHABLE))
            assert not wrong.connected and not untrusted.connected
        assert warnings_of(caplog, "mqtt connection refused")[0]["reason"] == "Not authorized"
        unreachable = warnings_of(caplog, UNREACHABLE)[0]
        assert unreachable["port"] == broker.port and "CERTIFICATE_VERIFY_FAILED" in unreachable["reason"]
        assert collector.json("t/data") == [{"n": 1}]
    finally:
        for p in publishers:
            p.close()
        collector.close()
        broker.stop()


def test_tls_host_name_is_checked_unless_insecure(tmp_path, tls_files, caplog):
    _, other, dns_only = tls_files  # the broker's certificate says "localhost"; the client dials 127.0.0.1
    broker = Broker(tmp_path / "broker", tls=dns_only, users={"edge": "s3cret"}).start()
    publishers = []
    try:
        assert "IP address mismatch" in unreachable_reason(
            caplog, tls_config(broker.port, dns_only.ca), "pub-strict", publishers)
        insecure_cfg = tls_config(broker.port, dns_only.ca).model_copy(
            update={"tls": TLSConfig(ca_certs=str(dns_only.ca), insecure=True)})
        lax = MqttPublisher(insecure_cfg, "pub-insecure", "t/availability")
        publishers.append(lax)
        lax.start()
        deadline = time.monotonic() + 10
        while not lax.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lax.connected
        # insecure skips the name only: a certificate from an unknown CA is still refused
        unknown_ca = insecure_cfg.model_copy(update={"tls": TLSConfig(ca_certs=str(other.ca), insecure=True)})
        assert "CERTIFICATE_VERIFY_FAILED" in unreachable_reason(caplog, unknown_ca, "pub-unknown", publishers)
    finally:
        for p in publishers:
            p.close()
        broker.stop()


def test_unreachable_broker_reason_is_logged(caplog):
    publishers = []
    cfg = MqttConfig(host="127.0.0.1", port=free_port(), flush_timeout_s=0)  # nothing listens there
    try:
        assert "Connection refused" in unreachable_reason(caplog, cfg, "pub-x", publishers)
    finally:
        for p in publishers:
            p.close()


def test_daemon_messages_follow_the_documented_schema(broker, tmp_path, tiny_model, car_video):
    collector = Collector(broker.port, ["sd/#", "homeassistant/#"])
    cfg = EdgeConfig.model_validate(edge_config(
        tiny_model, car_video, broker.port,
        source={"max_fps": 30}, run={"max_frames": 12},
        mqtt={"stats_interval_s": 0.15, "home_assistant": {"enabled": True}}))
    thread, result = run_in_thread(Daemon(cfg))
    finish(thread, result)
    assert collector.wait_for(lambda: collector.last("sd/availability") == "offline")
    collector.close()

    dets = collector.json(f"{P}/detections")
    assert [d["frame"] for d in dets] == list(range(12))
    for d in dets:
        assert set(d) == {"camera", "frame", "timestamp", "time", "image", "model_id", "inference_ms", "objects"}
        assert d["camera"] == "test_cam" and d["model_id"] == "tiny_a" and d["image"] == {"width": 256, "height": 128}
        assert isinstance(d["timestamp"], float) and abs(d["timestamp"] - time.time()) < 60
        assert datetime.fromisoformat(d["time"].replace("Z", "+00:00")).timestamp() == pytest.approx(d["timestamp"], abs=1e-6)
        assert isinstance(d["inference_ms"], (int, float)) and d["inference_ms"] > 0
    assert dets[0]["objects"] == []  # not confirmed yet (min_hits=2)
    for d in dets[1:]:
        (obj,) = d["objects"]
        assert set(obj) == OBJECT_KEYS
        assert obj["id"] == 1 and obj["label"] == "car" and obj["missed"] == 0 and obj["first_frame"] == 0
        assert 0.99 < obj["score"] <= 1 and 0.99 < obj["smoothed_score"] <= 1
        assert obj["box"] == pytest.approx(expected_box(1, 2), abs=0.02)
        assert obj["box_norm"] == pytest.approx([v / s for v, s in zip(obj["box"], (256, 128, 256, 128))], abs=1e-4)

    events = collector.json(f"{P}/events")
    assert [(e["type"], e["frame"]) for e in events] == [("new", 1), ("end", 11)]
    assert events[0]["before"] is None and set(events[0]["after"]) == OBJECT_KEYS
    assert events[1]["before"]["id"] == events[1]["after"]["id"] == 1
    counts = collector.payloads(f"{P}/car/count")
    assert state_tail(counts, ["0", "1", "0"]) and b"1" in counts, counts
    assert [p.decode() for p in collector.payloads(f"{P}/person/count")] == ["0"]
    assert collector.payloads("sd/availability")[0] == b"online"

    status = collector.json(f"{P}/status")
    assert status[0]["state"] == "online" and status[0]["model_id"] == "tiny_a" and status[0]["model_error"] is None
    assert status[-1]["state"] == "offline"

    stats = collector.json("sd/stats")
    assert stats, "no stats message"
    assert {"fps", "inference_ms", "frames", "dropped_frames", "mqtt_queue", "mqtt_queue_max", "mqtt_dropped",
            "source_queue", "model_id", "uptime_s", "timestamp", "time"} <= set(stats[-1])
    assert stats[-1]["fps"] > 0 and stats[-1]["mqtt_queue"] <= stats[-1]["mqtt_queue_max"]

    (disc_topic,) = [t for t, _, _ in collector.messages if t.endswith("car_count/config")]
    assert disc_topic == "homeassistant/sensor/sd_test_cam/sd_test_cam_car_count/config"
    disc = json.loads(collector.payloads(disc_topic)[0])
    assert disc["state_topic"] == f"{P}/car/count"
    assert [a["topic"] for a in disc["availability"]] == ["sd/availability", f"{P}/availability"]
    # state topics are retained: a late subscriber sees the final values at once
    late = Collector(broker.port, ["sd/#"])
    assert late.wait_for(lambda: late.last(f"{P}/car/count") == "0" and late.last("sd/availability") == "offline")
    assert all(retained for t, _, retained in late.messages)
    late.close()


def start_daemon_process(tmp_path, cfg):
    path = write_config(tmp_path / "edge.yaml", cfg)
    return subprocess.Popen([sys.executable, "-m", "pipeline", "--config", str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_last_will_offline_when_the_process_is_killed(broker, tmp_path, tiny_model, car_video):
    collector = Collector(broker.port, ["sd/availability", f"{P}/detections"])
    proc = start_daemon_process(tmp_path, edge_config(
        tiny_model, car_video, broker.port, source={"loop": True, "max_fps": 20}, run={"max_frames": None}))
    try:
        assert collector.wait_for(lambda: len(collector.payloads(f"{P}/detections")) >= 3, 30), proc.stderr
        assert collector.last("sd/availability") == "online"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert collector.wait_for(lambda: collector.last("sd/availability") == "offline", 10)
    finally:
        proc.kill()
        proc.communicate()
        collector.close()


@pytest.mark.slow
def test_sigterm_finishes_the_frame_publishes_offline_and_exits_zero(broker, tmp_path, tiny_model, car_video):
    collector = Collector(broker.port, ["sd/#"])
    proc = start_daemon_process(tmp_path, edge_config(
        tiny_model, car_video, broker.port, source={"loop": True, "max_fps": 20}, run={"max_frames": None}))
    try:
        assert collector.wait_for(lambda: len(collector.payloads(f"{P}/detections")) >= 4, 30)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "msg=stopped reason=stopped" in out
    assert collector.wait_for(lambda: collector.last("sd/availability") == "offline")
    assert [e["type"] for e in collector.json(f"{P}/events")] == ["new", "end"]
    assert collector.last(f"{P}/car/count") == "0"
    collector.close()


@pytest.mark.slow
@pytest.mark.parametrize("queue_size", [1000, 5])
def test_broker_restart_mid_stream_delivers_queued_detections(tmp_path, tiny_model, car_video, queue_size):
    """QoS 1 detections produced while the broker is down arrive after it is back (frame indices
    contiguous); with a small queue exactly the dropped ones are missing and the queue never grows."""
    broker = Broker(tmp_path / "broker").start()
    collector = Collector(broker.port, [f"{P}/detections"], client_id="outage", clean_session=False)
    frames = 60
    cfg = EdgeConfig.model_validate(edge_config(
        tiny_model, car_video, broker.port, source={"loop": True, "max_fps": 25}, run={"max_frames": frames},
        mqtt={"queue_size": queue_size, "stats_interval_s": 3600, "flush_timeout_s": 10}))
    daemon = Daemon(cfg)
    thread, result = run_in_thread(daemon)
    try:
        assert collector.wait_for(lambda: len(collector.payloads(f"{P}/detections")) >= 8, 20)
        broker.stop()
        time.sleep(1.2)  # ~30 frames detected while the broker is away
        assert not daemon.publisher.connected and daemon.frames < frames
        broker.start()  # same port, sessions restored from persistence
        finish(thread, result)
        pub = daemon.publisher
        expected = frames - pub.dropped
        assert collector.wait_for(lambda: len({d["frame"] for d in collector.json(f"{P}/detections")}) >= expected, 20)
        got = sorted({d["frame"] for d in collector.json(f"{P}/detections")})
        assert pub.high_water <= queue_size
        if queue_size == 1000:
            assert got == list(range(frames)) and pub.dropped == 0 and pub.high_water > 5
        else:
            assert pub.dropped > 0 and pub.high_water == queue_size
            assert len(got) == frames - pub.dropped
            missing = sorted(set(range(frames)) - set(got))
            assert missing == list(range(missing[0], missing[0] + len(missing)))  # one run of the oldest
    finally:
        collector.close()
        broker.stop()


class FlakyStream:
    """Opener for a fake RTSP stream: 5 frames, then it dies; two reopen attempts fail; then it is back."""

    def __init__(self):
        self.opens = 0

    def __call__(self, cfg):
        self.opens += 1
        if self.opens in (2, 3):
            raise SourceError(f"{cfg.uri}: cannot open stream")
        return _Capture(5 if self.opens == 1 else 10_000)


class _Capture:
    def __init__(self, n):
        self.n = n
        self.image = cell_rect_frame([(1, 2, RED)])[:, :, ::-1].copy()  # BGR, as OpenCV delivers

    def read(self):
        if self.n <= 0:
            return False, None
        self.n -= 1
        time.sleep(0.02)
        return True, self.image

    def get(self, prop):
        return 0.0

    def release(self):
        pass


def test_lost_camera_reconnects_and_status_topic_shows_it(broker, tiny_model, car_video):
    collector = Collector(broker.port, [f"{P}/status"])
    cfg = EdgeConfig.model_validate(edge_config(
        tiny_model, "rtsp://camera.local/stream", broker.port, run={"max_frames": 12},
        source={"reconnect_initial_s": 0.1, "reconnect_max_s": 0.3}))
    opener = FlakyStream()
    daemon = Daemon(cfg, opener=opener)
    thread, result = run_in_thread(daemon)
    finish(thread, result)
    assert opener.opens == 4 and daemon.frames == 12
    assert collector.wait_for(lambda: collector.json(f"{P}/status")[-1]["state"] == "offline")
    seq = [(s["state"], s["detail"]) for s in collector.json(f"{P}/status")]
    states = [s for s, _ in seq]
    assert states[0] == "online" and states[-1] == "offline"
    lost = states.index("reconnecting")
    assert "online" in states[lost:]  # back after the outage
    details = [d for s, d in seq if s == "reconnecting"]
    assert details[0].startswith("stream lost; attempt 1")
    assert any(d.startswith("rtsp://camera.local/stream: cannot open stream; attempt 3") for d in details)
    collector.close()


def test_reload_command_swaps_the_model_and_a_bad_file_is_rejected(broker, tmp_path, tiny_models, tiny_model,
                                                                    car_video):
    collector = Collector(broker.port, [f"{P}/detections", f"{P}/status"])
    cfg = EdgeConfig.model_validate(edge_config(
        tiny_model, car_video, broker.port, source={"loop": True, "max_fps": 25}, run={"max_frames": None}))
    daemon = Daemon(cfg)
    thread, result = run_in_thread(daemon)
    sender = Collector(broker.port, ["unused/topic"])

    def model_ids():
        return [d["model_id"] for d in collector.json(f"{P}/detections")]

    try:
        assert collector.wait_for(lambda: len(model_ids()) >= 3, 20)
        install_model(tiny_models["tiny_b"], tiny_model)
        sender.client.publish(f"{P}/command", json.dumps({"action": "reload_model"}), qos=1)
        assert collector.wait_for(lambda: model_ids()[-1] == "tiny_b", 20)
        assert collector.json(f"{P}/status")[-1]["model_id"] == "tiny_b"

        tiny_model.write_bytes(b"\x00" * 300)  # a broken upload
        sender.client.publish("sd/command", json.dumps({"action": "reload_model"}), qos=1)
        assert collector.wait_for(lambda: (collector.json(f"{P}/status")[-1]["model_error"] or "").startswith(str(tiny_model.with_suffix(".json"))), 20)
        n = len(model_ids())
        assert collector.wait_for(lambda: len(model_ids()) >= n + 5, 20)
        assert set(model_ids()[n:]) == {"tiny_b"}  # the old model kept running
        sender.client.publish(f"{P}/command", b"not json", qos=1)  # ignored, logged
        daemon.stop()
        finish(thread, result)
    finally:
        daemon.stop()
        sender.close()
        collector.close()


@pytest.mark.broker
def test_state_never_overtakes_stream_messages_queued_before_it(broker):
    """'offline' set after the last events must reach subscribers after them (a consumer that sees the
    camera go offline has seen every track end); state set before a backlog still goes first on reconnect."""
    collector = Collector(broker.port, ["order/#"])
    pub = MqttPublisher(MqttConfig(host="127.0.0.1", port=broker.port, max_inflight=1, flush_timeout_s=5),
                        "pub-order", "order/availability")
    pub.start()
    try:
        assert collector.wait_for(lambda: pub.connected, 10)
        pub.set_state("order/availability", "online")
        assert collector.wait_for(lambda: collector.last("order/availability") == "online", 10)
        for i in range(300):
            pub.publish("order/events", {"i": i})
        pub.set_state("order/availability", "offline")
        pub.close()
        assert collector.wait_for(lambda: collector.last("order/availability") == "offline", 10)
        order = [(t, p) for t, p, _ in collector.messages if t.startswith("order/")]
        events = [i for i, (t, _) in enumerate(order) if t == "order/events"]
        assert len(events) == 300
        assert order.index(("order/availability", b"offline")) > events[-1]
        assert order.index(("order/availability", b"online")) < events[0]
    finally:
        collector.close()
