"""`python -m pipeline.watch`: print a daemon's MQTT messages as they arrive, one readable line each.

A consumer's-eye view for the demo and for debugging a site: subscribes to ``<prefix>/#`` and exits when
the daemon announces ``offline`` (or after ``--timeout`` seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from pipeline.mqtt import DaemonTopics


def format_message(topic: str, payload: bytes, prefix: str) -> str | None:
    """One line for a message, or None for topics not worth a line (HA discovery)."""
    rel = topic[len(prefix) + 1 :] if topic.startswith(prefix + "/") else topic
    text = payload.decode("utf-8", "replace")
    if rel.endswith("/detections"):
        msg = json.loads(text)
        objs = ", ".join(
            f"#{o['id']} {o['label']} {o['score']:.2f}/{o['smoothed_score']:.2f} "
            f"[{', '.join(f'{v:.0f}' for v in o['box'])}]"
            for o in msg["objects"]
        )
        return f"{rel:<28} frame {msg['frame']:>4}  {len(msg['objects'])} object(s)  {objs}"
    if rel.endswith("/events"):
        msg = json.loads(text)
        o = msg["after"] or msg["before"]
        return f"{rel:<28} frame {msg['frame']:>4}  {msg['type'].upper():<6} #{o['id']} {o['label']} " \
               f"smoothed {o['smoothed_score']:.2f}"
    if rel == "stats" or rel.endswith("/stats"):
        msg = json.loads(text)
        line = f"{rel:<28} fps {msg['fps']:.1f}  inference {msg['inference_ms']:.1f} ms  frames {msg['frames']}" \
               f"  dropped {msg['dropped_frames']}"
        return line + (f"  mqtt queue {msg['mqtt_queue']}" if "mqtt_queue" in msg else "")
    if rel.endswith("/snapshot"):
        return f"{rel:<28} JPEG, {len(payload)} bytes"
    if "/zones/" in rel and rel.endswith("/events"):
        msg = json.loads(text)
        return f"{rel:<28} frame {msg['frame']:>4}  {msg['type'].upper():<6} #{msg['id']} {msg['label']}" \
               f"  now {msg['count']} in {msg['zone']}"
    if "/lines/" in rel and rel.endswith("/events"):
        msg = json.loads(text)
        return f"{rel:<28} frame {msg['frame']:>4}  CROSS {msg['direction'].upper():<3} #{msg['id']} {msg['label']}" \
               f"  totals in {msg['totals']['in']} out {msg['totals']['out']}"
    if topic.startswith("homeassistant/"):
        return None
    return f"{rel:<28} {text}"


def main(argv=None) -> int:
    import paho.mqtt.client as mqtt

    p = argparse.ArgumentParser(prog="python -m pipeline.watch", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--prefix", default="squeezedet")
    p.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    p.add_argument("--ready-file", help="touch this file once subscribed (lets a script start the daemon)")
    args = p.parse_args(argv)

    done = threading.Event()
    seen_online = threading.Event()
    counts = {"detections": 0, "events": 0}
    availability = DaemonTopics(args.prefix).availability

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe([(f"{args.prefix}/#", 1), ("homeassistant/#", 0)])

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        if args.ready_file:
            open(args.ready_file, "w").close()

    def on_message(client, userdata, msg):
        line = format_message(msg.topic, msg.payload, args.prefix)
        for kind in counts:
            if msg.topic.endswith("/" + kind):
                counts[kind] += 1
        if line:
            print(line, flush=True)
        if msg.topic == availability:
            if msg.payload == b"online":
                seen_online.set()
            elif msg.payload == b"offline" and seen_online.is_set():
                done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"squeezedet-watch-{int(time.time())}")
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    finished = done.wait(args.timeout)
    time.sleep(0.2)
    client.loop_stop()
    client.disconnect()
    print(f"watch: {counts['detections']} detections messages, {counts['events']} events", flush=True)
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main())
