"""Home Assistant discovery to the current schema (default_entity_id, origin, device, availability;
no object_id), one device per camera, and discovery + states re-sent when Home Assistant comes online."""

import json

from pipeline_helpers import (  # noqa: F401 - fixtures
    Collector,
    broker_fixture,
    car_video_fixture,
    edge_config,
    run_in_thread,
    state_tail,
    tiny_model_fixture,
    tiny_models_fixture,
)

from pipeline import homeassistant as ha
from pipeline.config import EdgeConfig
from pipeline.daemon import Daemon

PLATFORM_FIELDS = {
    "sensor": {"state_topic", "state_class", "icon"},
    "binary_sensor": {"state_topic", "payload_on", "payload_off", "device_class"},
    "image": {"image_topic", "content_type"},
}
COMMON = {"name", "unique_id", "default_entity_id", "availability", "availability_mode", "device", "origin"}


def check_schema(topic: str, cfg: dict, prefix="homeassistant"):
    """The documented MQTT discovery fields, and nothing Home Assistant no longer honours."""
    disc, platform, node, object_id, last = topic.split("/")
    assert (disc, last) == (prefix, "config") and platform in PLATFORM_FIELDS
    assert "object_id" not in cfg and "availability_topic" not in cfg
    assert set(cfg) == COMMON | PLATFORM_FIELDS[platform], set(cfg) ^ (COMMON | PLATFORM_FIELDS[platform])
    assert cfg["unique_id"] == object_id and cfg["default_entity_id"] == f"{platform}.{object_id}"
    assert object_id.startswith(node + "_")
    assert cfg["device"]["identifiers"] == [node] and cfg["device"]["name"]
    assert {"name", "sw_version"} <= set(cfg["origin"]) and cfg["origin"]["name"] == "squeezedet-edge"
    for a in cfg["availability"]:
        assert set(a) == {"topic", "payload_available", "payload_not_available"}
        assert (a["payload_available"], a["payload_not_available"]) == ("online", "offline")
    assert cfg["availability_mode"] == "all"
    if platform == "binary_sensor":
        assert (cfg["payload_on"], cfg["payload_off"], cfg["device_class"]) == ("ON", "OFF", "occupancy")
    if platform == "image":
        assert cfg["content_type"] == "image/jpeg"
    return platform, object_id


def run_daemon_with_ha(broker, tiny_model, car_video, **run):
    cfg = EdgeConfig.model_validate(edge_config(
        tiny_model, car_video, broker.port, run=run,
        mqtt={"home_assistant": {"enabled": True, "support_url": "https://example.org/runbook"}},
        camera={"name": "test_cam", "snapshots": {"enabled": True},
                "zones": {"drive": {"points": [[0, 0], [1, 0], [1, 1], [0, 1]]}},
                "lines": {"gate": {"points": [[0, 0.5], [1, 0.5]], "labels": ["car"]}}}))
    return cfg, Daemon(cfg)


def test_discovery_payloads_follow_the_current_schema(broker, tmp_path, tiny_model, car_video):
    collector = Collector(broker.port, ["homeassistant/#", "sd/#"])
    cfg, daemon = run_daemon_with_ha(broker, tiny_model, car_video, max_frames=4, state_file=str(tmp_path / "s.json"))
    thread, result = run_in_thread(daemon)
    thread.join(30)
    assert result == [0]
    assert collector.wait_for(lambda: collector.last("sd/availability") == "offline")
    configs = {t: json.loads(p) for t, p, _ in collector.messages if t.startswith("homeassistant/")}
    entities = sorted(check_schema(t, c) for t, c in configs.items())
    assert entities == sorted([
        ("sensor", "sd_test_cam_car_count"), ("sensor", "sd_test_cam_person_count"),
        ("binary_sensor", "sd_test_cam_car_occupancy"), ("binary_sensor", "sd_test_cam_person_occupancy"),
        ("image", "sd_test_cam_car_snapshot"), ("image", "sd_test_cam_person_snapshot"),
        ("sensor", "sd_test_cam_drive_car_count"), ("sensor", "sd_test_cam_drive_person_count"),
        ("binary_sensor", "sd_test_cam_drive_car_occupancy"), ("binary_sensor", "sd_test_cam_drive_person_occupancy"),
        ("sensor", "sd_test_cam_gate_car_in"), ("sensor", "sd_test_cam_gate_car_out"),  # labels: [car]
    ])
    car = configs["homeassistant/binary_sensor/sd_test_cam/sd_test_cam_car_occupancy/config"]
    assert car["state_topic"] == "sd/test_cam/car/occupancy"
    assert [a["topic"] for a in car["availability"]] == ["sd/availability", "sd/test_cam/availability"]
    assert car["origin"]["support_url"] == "https://example.org/runbook"
    assert car["device"]["name"] == "SqueezeDet test_cam"
    image = configs["homeassistant/image/sd_test_cam/sd_test_cam_car_snapshot/config"]
    assert image["image_topic"] == "sd/test_cam/car/snapshot"
    gate = configs["homeassistant/sensor/sd_test_cam/sd_test_cam_gate_car_in/config"]
    assert (gate["state_topic"], gate["state_class"]) == ("sd/test_cam/lines/gate/car/in", "total_increasing")
    # every state topic an entity reads exists (retained) before Home Assistant needs it
    for c in configs.values():
        topic = c.get("state_topic") or c.get("image_topic")
        assert collector.payloads(topic) or topic.endswith("/snapshot"), topic
    for topic in ("sd/test_cam/car/occupancy", "sd/test_cam/zones/drive/car/occupancy"):
        got = collector.payloads(topic)
        assert state_tail(got, ["OFF", "ON", "OFF"]) and b"ON" in got, (topic, got)
    collector.close()


def test_discovery_and_states_are_sent_again_when_home_assistant_comes_online(broker, tmp_path, tiny_model,
                                                                               car_video):
    collector = Collector(broker.port, ["homeassistant/#", "sd/#"])
    cfg, daemon = run_daemon_with_ha(broker, tiny_model, car_video, max_frames=None,
                                     state_file=str(tmp_path / "s.json"))
    cfg.cameras["test_cam"].source.loop = True
    thread, result = run_in_thread(daemon)
    disc_topic = "homeassistant/sensor/sd_test_cam/sd_test_cam_car_count/config"
    try:
        assert collector.wait_for(lambda: collector.payloads(disc_topic) and collector.last("sd/test_cam/car/count") == "1")
        n_disc = len(collector.payloads(disc_topic))
        n_line = len(collector.payloads("sd/test_cam/lines/gate/car/in"))
        collector.client.publish("homeassistant/status", "online", qos=1)
        assert collector.wait_for(lambda: len(collector.payloads(disc_topic)) == n_disc + 1)
        assert collector.wait_for(lambda: len(collector.payloads("sd/test_cam/lines/gate/car/in")) == n_line + 1)
        # discovery first, then the states it describes
        order = [t for t, _, _ in collector.messages]
        resent_disc = [i for i, t in enumerate(order) if t == disc_topic][n_disc]
        resent_line = [i for i, t in enumerate(order) if t == "sd/test_cam/lines/gate/car/in"][n_line]
        gate_disc = [i for i, t in enumerate(order) if t.endswith("sd_test_cam_gate_car_in/config")][-1]
        assert resent_disc < resent_line and gate_disc < resent_line
        collector.client.publish("homeassistant/status", "offline", qos=1)  # HA going away: nothing re-sent
    finally:
        daemon.stop()
        thread.join(30)
        collector.close()
    assert result == [0]
    assert ha.ON == "ON"
