"""Host side of scripts/arm64_check.sh: the daemon's config for one run, an MQTT collector of what it
publishes, and the per-frame comparison of two runs (host x86_64 vs emulated aarch64).

    python scripts/arm64_compare.py config  --out edge.yaml --model M --source S --port P --prefix X ...
    python scripts/arm64_compare.py collect --port P --prefix X --out run.json --timeout 900 --ready-file F
    python scripts/arm64_compare.py compare --name "LiteRT" --host host.json --arm arm.json --score-tol 0.05

Needs PyYAML (config) and paho-mqtt (collect); compare is numpy-free. Every file is written to a temp
name beside its destination and renamed into place.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- config --------------------------------------------------------------------------------------
def make_config(args) -> int:
    """The demo's config (configs/edge_file.yaml) with this run's model, clip, broker and frame count.
    The tracker confirms every detection on its first frame (min_hits 1, threshold 0) and ends it on the
    next miss, so each frame's ``detections`` message carries exactly that frame's detections."""
    import yaml

    cfg = yaml.safe_load(Path(args.base).read_text())
    cfg["source"].update({"uri": args.source, "loop": False, "max_fps": None})
    cfg["model"].update({"path": args.model, "num_threads": args.threads, "watch_interval_s": 0})
    if args.backend:
        cfg["model"]["backend"] = args.backend
    cfg["tracker"].update({"threshold": 0.0, "min_hits": 1, "max_missed": 1})
    cfg["mqtt"].update({"host": "127.0.0.1", "port": args.port, "prefix": args.prefix, "qos": 1})
    cfg["run"].update({"stop_at_end": True, "max_frames": args.frames, "output_video": None})
    write_atomic(Path(args.out), yaml.safe_dump(cfg, sort_keys=False))
    return 0


# -- collect -------------------------------------------------------------------------------------
def collect(args) -> int:
    """Subscribe to ``<prefix>/#`` and keep every ``detections`` payload (by frame), the last status and
    stats; stop when the daemon announces ``offline`` on ``<prefix>/availability`` after ``online``."""
    import paho.mqtt.client as mqtt

    prefix = args.prefix
    frames: dict[int, list] = {}
    last: dict[str, dict] = {}
    seen_online, done = threading.Event(), threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe(f"{prefix}/#", qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        Path(args.ready_file).touch()

    def on_message(client, userdata, msg):
        text = msg.payload.decode("utf-8", "replace")
        if msg.topic == f"{prefix}/availability":
            if text == "online":
                seen_online.set()
            elif text == "offline" and seen_online.is_set():
                done.set()
        elif msg.topic.endswith("/detections"):
            payload = json.loads(text)
            frames[int(payload["frame"])] = [
                {"label": o["label"], "score": o["score"], "box": o["box"]}
                for o in payload["objects"] if o.get("missed", 0) == 0]
        elif msg.topic.endswith(("/status", "/stats")) and text.startswith("{"):
            last[msg.topic[len(prefix) + 1:]] = json.loads(text)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"arm64-check-{os.getpid()}")
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect("127.0.0.1", args.port, keepalive=30)
    client.loop_start()
    finished = done.wait(args.timeout)
    client.disconnect()
    client.loop_stop()
    result = {"prefix": prefix, "complete": finished, "frames": {str(k): frames[k] for k in sorted(frames)},
              "last": last}
    write_atomic(Path(args.out), json.dumps(result, indent=1))
    if not finished:
        print(f"arm64_compare collect: no 'offline' on {prefix}/availability within {args.timeout:.0f} s",
              file=sys.stderr)
        return 1
    return 0


# -- compare -------------------------------------------------------------------------------------
def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_frame(host: list, arm: list, min_iou: float = 0.5):
    """Greedy same-label matching by IoU, best pair first (pairs at or below ``min_iou`` never match):
    [(host_obj, arm_obj, iou)], and the host's and arm64's unmatched objects."""
    pairs = sorted(((iou(h["box"], a["box"]), i, j) for i, h in enumerate(host) for j, a in enumerate(arm)
                    if h["label"] == a["label"]), reverse=True)
    used_h, used_a, matched = set(), set(), []
    for v, i, j in pairs:
        if i in used_h or j in used_a or v <= min_iou:
            continue
        used_h.add(i)
        used_a.add(j)
        matched.append((host[i], arm[j], v))
    return (matched, [o for i, o in enumerate(host) if i not in used_h],
            [o for j, o in enumerate(arm) if j not in used_a])


def borderline(obj: dict, same_side: list, args) -> str | None:
    """Why a detection seen on one side only sits on one of the decoder's thresholds, or None: its score
    within --score-tol of the score threshold, or its IoU with a higher-scored detection of its label
    within --nms-margin below the NMS threshold (a slightly moved box is suppressed on the other side)."""
    if abs(obj["score"] - args.score_threshold) <= args.score_tol:
        return f"score {obj['score']:.3f} at threshold {args.score_threshold}"
    for other in same_side:
        if other is obj or other["label"] != obj["label"] or other["score"] <= obj["score"]:
            continue
        v = iou(other["box"], obj["box"])
        if args.nms_threshold - args.nms_margin <= v <= args.nms_threshold:
            return f"score {obj['score']:.3f}, IoU {v:.3f} with a stronger box at NMS {args.nms_threshold}"
    return None


def engine_of(run: dict) -> str:
    for key, value in run.get("last", {}).items():
        if key.endswith("stats") and isinstance(value, dict) and value.get("runtime"):
            return str(value["runtime"])
    return "?"


def compare(args) -> int:
    host = json.loads(Path(args.host).read_text())
    arm = json.loads(Path(args.arm).read_text())
    frames = sorted({int(k) for k in host["frames"]} | {int(k) for k in arm["frames"]})
    print(f"{args.name}: host {engine_of(host)}  vs  arm64 {engine_of(arm)}")
    print(f"  {'frame':>5}  {'host':>4}  {'arm64':>5}  {'labels':<22} {'min IoU':>8}  {'max |dscore|':>12}  result")
    failures, worst_iou, worst_ds, excused = 0, 1.0, 0.0, 0
    for f in frames:
        h, a = host["frames"].get(str(f)), arm["frames"].get(str(f))
        if h is None or a is None:
            failures += 1
            side = "host" if h is None else "arm64"
            print(f"  {f:>5}  {'-' if h is None else len(h):>4}  {'-' if a is None else len(a):>5}  "
                  f"{'':<22} {'':>8}  {'':>12}  FAIL: no detections message from {side}")
            continue
        matched, only_h, only_a = match_frame(h, a)
        ious = [v for _, _, v in matched]
        dss = [abs(x["score"] - y["score"]) for x, y, _ in matched]
        labels = ",".join(sorted(o["label"] for o in h)) or "(none)"
        problems, notes = [], []
        for side, objs, pool in (("host", only_h, h), ("arm64", only_a, a)):
            for o in objs:
                why = borderline(o, pool, args) if args.borderline else None
                if why:
                    notes.append(f"{side} only, borderline: {why}")
                else:
                    problems.append(f"{side} only: {o['label']} {o['score']:.3f}")
        excused += len(notes)
        if ious and min(ious) <= args.iou:
            problems.append(f"IoU <= {args.iou}")
        if dss and max(dss) > args.score_tol:
            problems.append(f"score off by > {args.score_tol}")
        worst_iou = min([worst_iou, *ious])
        worst_ds = max([worst_ds, *dss])
        failures += bool(problems)
        verdict = "FAIL: " + "; ".join(problems) if problems else "ok"
        if notes:
            verdict += " (" + "; ".join(notes) + ")"
        print(f"  {f:>5}  {len(h):>4}  {len(a):>5}  {labels:<22} "
              f"{(f'{min(ious):.4f}' if ious else '-'):>8}  {(f'{max(dss):.4f}' if dss else '-'):>12}  {verdict}")
    ok = not failures and len(frames) == args.frames and host.get("complete") and arm.get("complete")
    if len(frames) != args.frames:
        print(f"  expected {args.frames} frames, got {len(frames)}")
    print(f"  {args.name}: {'PASS' if ok else 'FAIL'}  {len(frames) - failures}/{len(frames)} frames agree; "
          f"min IoU {worst_iou:.4f} (> {args.iou} required), max |dscore| {worst_ds:.4f} "
          f"(tolerance {args.score_tol})" + (f"; {excused} borderline detection(s) on one side only" if excused else ""))
    return 0 if ok else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="arm64_compare.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("config")
    c.add_argument("--base", default="configs/edge_file.yaml")
    for name in ("out", "model", "source", "prefix"):
        c.add_argument(f"--{name}", required=True)
    c.add_argument("--backend")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--frames", type=int, required=True)
    c.add_argument("--threads", type=int, default=2)
    k = sub.add_parser("collect")
    k.add_argument("--port", type=int, required=True)
    for name in ("prefix", "out", "ready-file"):
        k.add_argument(f"--{name}", required=True)
    k.add_argument("--timeout", type=float, default=900.0)
    m = sub.add_parser("compare")
    for name in ("name", "host", "arm"):
        m.add_argument(f"--{name}", required=True)
    m.add_argument("--frames", type=int, required=True)
    m.add_argument("--iou", type=float, default=0.9)
    m.add_argument("--score-tol", type=float, required=True)
    m.add_argument("--borderline", action="store_true",
                   help="accept a detection seen on one side only when it sits on the score or NMS threshold")
    m.add_argument("--score-threshold", type=float, default=0.5)
    m.add_argument("--nms-threshold", type=float, default=0.3)
    m.add_argument("--nms-margin", type=float, default=0.05)
    args = p.parse_args(argv)
    return {"config": make_config, "collect": collect, "compare": compare}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
