"""What the messages say: the JSON payloads of a camera's and the daemon's topics.

Pure functions of a frame's results (no transport, no state), beside the reporter that sends them, so a
frame's result goes camera -> reporter -> publisher in one direction; ``pipeline.mqtt`` only moves bytes.
The README's MQTT section shows one real payload of each; key order is kept as published.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pipeline.lines import Crossing
from pipeline.snapshots import Snapshot
from pipeline.tracker import TrackedObject, TrackEvent
from pipeline.zones import ZoneEvent

Size = tuple[int, int]


def time_fields(ts: float) -> dict:
    """Epoch seconds (ms precision) and the same instant as ISO 8601 UTC."""
    ms = round(ts * 1000)
    dt = datetime.fromtimestamp(ms // 1000, timezone.utc).replace(microsecond=ms % 1000 * 1000)
    return {"timestamp": ms / 1000, "time": dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")}


def object_payload(obj: TrackedObject, width: int, height: int) -> dict:
    """One confirmed track: raw and smoothed score, box in pixels and normalised to the frame."""
    x1, y1, x2, y2 = obj.box
    return {
        "id": obj.track_id,
        "label": obj.label,
        "score": obj.score,
        "smoothed_score": obj.smoothed_score,
        "box": [x1, y1, x2, y2],
        "box_norm": [round(x1 / width, 4), round(y1 / height, 4), round(x2 / width, 4), round(y2 / height, 4)],
        "missed": obj.missed,
        "first_frame": obj.first_frame,
        "last_frame": obj.last_frame,
    }


def detections(camera: str, index: int, timestamp: float, size: Size, model_id: str, inference_ms: float,
               objects: list[TrackedObject]) -> dict:
    """``P/C/detections``: every confirmed object of one frame."""
    width, height = size
    return {
        "camera": camera, "frame": index, **time_fields(timestamp), "image": {"width": width, "height": height},
        "model_id": model_id, "inference_ms": round(inference_ms, 2),
        "objects": [object_payload(o, width, height) for o in objects],
    }


def track_event(camera: str, event: TrackEvent, index: int, timestamp: float, size: Size, model_id: str,
                snapshot: dict | None = None) -> dict:
    """``P/C/events``: a track's new / update / end with its state before (None for new) and after."""
    width, height = size
    payload = {
        "type": event.type, "camera": camera, "frame": index, **time_fields(timestamp), "model_id": model_id,
        "before": None if event.before is None else object_payload(event.before, width, height),
        "after": object_payload(event.after, width, height),
    }
    if snapshot is not None:
        payload["snapshot"] = snapshot
    return payload


def snapshot_reference(topic: str, snap: Snapshot) -> dict:
    """Where a ``new`` event's snapshot went: its retained topic, size and file."""
    return {"topic": topic, "width": snap.width, "height": snap.height, "bytes": len(snap.jpeg), "file": snap.path}


def zone_event(camera: str, ev: ZoneEvent, index: int, timestamp: float, size: Size) -> dict:
    """``P/C/zones/<zone>/events``: a track entering or leaving a zone, with the zone's count after it."""
    return {"type": ev.type, "camera": camera, "zone": ev.zone, "frame": index, **time_fields(timestamp),
            "id": ev.obj.track_id, "label": ev.obj.label, "count": ev.count, "object": object_payload(ev.obj, *size)}


def crossing(camera: str, c: Crossing, index: int, timestamp: float, size: Size) -> dict:
    """``P/C/lines/<line>/events``: a track crossing a counting line, with the line's totals after it."""
    return {"type": "cross", "camera": camera, "line": c.line, "direction": c.direction, "frame": index,
            **time_fields(timestamp), "id": c.obj.track_id, "label": c.obj.label, "totals": c.totals,
            "object": object_payload(c.obj, *size)}


def status(camera: str, fields: dict, now: float) -> dict:
    """``P/C/status``: source state, detail, model id and the last model error."""
    return {"camera": camera, **fields, **time_fields(now)}


def camera_stats(camera: str, fields: dict, now: float) -> dict:
    """``P/C/stats``: one camera's throughput and totals."""
    return {"camera": camera, **time_fields(now), **fields}


def daemon_stats(stats: dict, now: float, queue: int, queue_max: int, dropped: int, connected: bool) -> dict:
    """``P/stats``: the daemon-wide figures with every camera's, and the MQTT queue's state flattened."""
    return {**time_fields(now), **{k: v for k, v in stats.items() if k != "mqtt"}, "mqtt_queue": queue,
            "mqtt_queue_max": queue_max, "mqtt_dropped": dropped, "mqtt_connected": connected}
