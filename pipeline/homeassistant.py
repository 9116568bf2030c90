"""Home Assistant MQTT discovery, to the current schema: one device per camera with its entities.

Per camera (``node`` = ``<prefix>_<camera>``):

* ``sensor``         ``<label> count`` - confirmed objects in view
* ``binary_sensor``  ``<label> occupancy`` - ON while at least one is in view (device_class occupancy)
* ``image``          ``<label> snapshot`` - the latest snapshot JPEG (when snapshots are on)
* ``sensor`` + ``binary_sensor`` per zone and label: ``<zone> <label> count`` / ``occupancy``
* ``sensor``         ``<line> <label> in`` / ``out`` - crossing totals (state_class total_increasing,
  so a reset is a new cycle for long-term statistics)

Every config carries ``unique_id``, ``default_entity_id`` (``<platform>.<node>_<what>``; Home Assistant
2026.4 dropped ``object_id``), an ``origin`` block, the camera's ``device`` and two availability topics
(daemon and camera) that must both say ``online``. Discovery configs and states are retained and sent
again when Home Assistant announces ``online`` on its status topic (after its own restart).
"""

from __future__ import annotations

from importlib import metadata

from pipeline.mqtt import OFFLINE, ONLINE, Topics, topic_level

ON, OFF = "ON", "OFF"
MANUFACTURER = "SqueezeDet"
MODEL = "squeezedet-edge"


def sw_version() -> str:
    try:
        return metadata.version("squeezedet")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def origin(ha_cfg) -> dict:
    out = {"name": MODEL, "sw_version": sw_version()}
    if getattr(ha_cfg, "support_url", None):
        out["support_url"] = ha_cfg.support_url
    return out


def node_id(topics: Topics) -> str:
    return topic_level(f"{topics.prefix}_{topics.camera}")


def device(topics: Topics, ha_cfg) -> dict:
    name = ha_cfg.device_name or f"SqueezeDet {topics.camera}"
    return {
        "identifiers": [node_id(topics)],
        "name": name,
        "manufacturer": MANUFACTURER,
        "model": MODEL,
        "sw_version": sw_version(),
    }


def _entity(platform: str, what: str, name: str, topics: Topics, ha_cfg, **fields) -> tuple[str, dict]:
    node = node_id(topics)
    object_id = f"{node}_{topic_level(what)}"
    return topics.ha_discovery(ha_cfg, platform, node, object_id), {
        "name": name,
        "unique_id": object_id,
        "default_entity_id": f"{platform}.{object_id}",
        **fields,
        "availability": [
            {"topic": topics.availability, "payload_available": ONLINE, "payload_not_available": OFFLINE},
            {"topic": topics.camera_availability, "payload_available": ONLINE, "payload_not_available": OFFLINE},
        ],
        "availability_mode": "all",
        "device": device(topics, ha_cfg),
        "origin": origin(ha_cfg),
    }


def _count(what: str, name: str, state_topic: str, topics: Topics, ha_cfg, icon: str = "mdi:counter",
           state_class: str = "measurement") -> tuple[str, dict]:
    return _entity("sensor", what, name, topics, ha_cfg, state_topic=state_topic, state_class=state_class,
                   icon=icon)


def _occupancy(what: str, name: str, state_topic: str, topics: Topics, ha_cfg) -> tuple[str, dict]:
    return _entity("binary_sensor", what, name, topics, ha_cfg, state_topic=state_topic, payload_on=ON,
                   payload_off=OFF, device_class="occupancy")


def label_entities(topics: Topics, ha_cfg, label: str, snapshots: bool) -> list[tuple[str, dict]]:
    out = [
        _count(f"{label}_count", f"{label} count", topics.count(label), topics, ha_cfg),
        _occupancy(f"{label}_occupancy", f"{label} occupancy", topics.occupancy(label), topics, ha_cfg),
    ]
    if snapshots:
        out.append(_entity("image", f"{label}_snapshot", f"{label} snapshot", topics, ha_cfg,
                           image_topic=topics.snapshot(label), content_type="image/jpeg"))
    return out


def zone_entities(topics: Topics, ha_cfg, zone: str, label: str) -> list[tuple[str, dict]]:
    return [
        _count(f"{zone}_{label}_count", f"{zone} {label} count", topics.zone_count(zone, label), topics, ha_cfg),
        _occupancy(f"{zone}_{label}_occupancy", f"{zone} {label} occupancy", topics.zone_occupancy(zone, label),
                   topics, ha_cfg),
    ]


def line_entities(topics: Topics, ha_cfg, line: str, label: str) -> list[tuple[str, dict]]:
    return [
        _count(f"{line}_{label}_{d}", f"{line} {label} {d}", topics.line_total(line, label, d), topics, ha_cfg,
               icon="mdi:transit-transfer", state_class="total_increasing")
        for d in ("in", "out")
    ]
