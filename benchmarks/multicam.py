"""N cameras on one detector: throughput, fairness and memory against the number of cameras.

Runs the daemon (MQTT off) with 1, 2, ... cameras that all read the same clip (looped), each camera
limited to ``--frames`` frames, and prints per row: total FPS, each camera's frame share, the detector
wait, and the process's peak RSS growth over one camera (one model load whatever N is: the growth is
frame buffers and per-camera state, not model copies). Each N runs in a fresh subprocess so peak
RSS is per configuration.

    python benchmarks/multicam.py --cameras 1 2 4 --frames 60 --threads 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, time
from pipeline.config import EdgeConfig
from pipeline.daemon import Daemon
model, video, n, frames, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cfg = EdgeConfig.model_validate({
    "cameras": {f"cam{i}": {"source": {"uri": video, "loop": True}} for i in range(n)},
    "model": {"path": model, "num_threads": threads, "watch_interval_s": 0},
    "mqtt": {"enabled": False}, "run": {"max_frames": frames}, "logging": {"level": "WARNING"}})
import logging; logging.disable(logging.INFO)
d = Daemon(cfg)
t0 = time.perf_counter()
d.run()
elapsed = time.perf_counter() - t0
waits = [w.stats()["detector_wait_ms"] for w in d.cameras.values()]
print(json.dumps({"fps": d.frames / elapsed, "served": d.shared.served, "wait_ms": sum(waits) / len(waits),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(model: str, video: str, n: int, frames: int, threads: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHILD, model, video, str(n), str(frames), str(threads)],
                          capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(REPO / "assets/models/squeezedet_kitti_int8.tflite"))
    p.add_argument("--video", default=str(REPO / "assets/demo/highway_dashcam.mp4"))
    p.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--frames", type=int, default=60, help="frames per camera")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    rows = [(n, run(args.model, args.video, n, args.frames, args.threads)) for n in args.cameras]
    base = rows[0][1]["rss_mb"]
    print("| cameras | total FPS | frames per camera | mean detector wait | peak RSS | RSS over first row |")
    print("|---|---|---|---|---|---|")
    for n, r in rows:
        served = sorted(r["served"].values())
        share = f"{served[0]}" if served[0] == served[-1] else f"{served[0]}..{served[-1]}"
        print(f"| {n} | {r['fps']:.1f} | {share} | {r['wait_ms']:.1f} ms | {r['rss_mb']:.0f} MB | "
              f"{r['rss_mb'] - base:+.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
