#!/usr/bin/env bash
# The main job, from a fresh clone: a local mosquitto broker, the edge daemon running the bundled int8
# SqueezeDet on the bundled dashcam clip, and a subscriber printing detections and events as they
# arrive. Writes outputs/highway_dashcam_annotated.mp4 and stops by itself.
#   ./scripts/demo.sh            whole clip
#   ./scripts/demo.sh --smoke    first 8 frames (what CI runs)
source "$(dirname "$0")/_env.sh"

MAX_FRAMES=""
if [ "${1:-}" = "--smoke" ]; then MAX_FRAMES=8; fi

ensure_mosquitto
ensure_venv "edge"
cd "$REPO_ROOT"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$PORT" > "$WORK/mosquitto.conf"
"$(mosquitto_bin)" -c "$WORK/mosquitto.conf" > "$WORK/mosquitto.log" 2>&1 &
PIDS+=($!)
broker_up() { "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null; }
for _ in $(seq 50); do broker_up && break; sleep 0.1; done
if ! broker_up; then
  log "mosquitto did not start:"; cat "$WORK/mosquitto.log" >&2; exit 1
fi
log "mosquitto listening on 127.0.0.1:$PORT"

# The demo config with this run's broker port (and frame limit in smoke mode).
"$PY" - "$WORK/edge.yaml" "$PORT" "$MAX_FRAMES" <<'PYCFG'
import sys, yaml
out, port, max_frames = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cfg = yaml.safe_load(open("configs/edge_file.yaml"))
cfg["mqtt"]["host"], cfg["mqtt"]["port"] = "127.0.0.1", port
if max_frames:
    cfg["run"]["max_frames"] = int(max_frames)
yaml.safe_dump(cfg, open(out, "w"), sort_keys=False)
PYCFG

"$PY" -m pipeline.watch --host 127.0.0.1 --port "$PORT" --prefix squeezedet --timeout 300 \
  --ready-file "$WORK/watch.ready" &
WATCH_PID=$!
PIDS+=($WATCH_PID)
for _ in $(seq 100); do [ -f "$WORK/watch.ready" ] && break; sleep 0.1; done
if [ ! -f "$WORK/watch.ready" ]; then log "the MQTT subscriber did not connect"; exit 1; fi

log "running the daemon on assets/demo/highway_dashcam.mp4 with assets/models/squeezedet_kitti_int8.tflite"
"$VENV/bin/squeezedet-edge" --config "$WORK/edge.yaml" --log-level WARNING
wait "$WATCH_PID"
log "done: annotated video in outputs/highway_dashcam_annotated.mp4"
