"""Does a live viewer slow the daemon down? Daemon FPS on the sample clip with the HTTP server off, on
with nobody watching, and on with one MJPEG viewer attached (a real HTTP client reading the stream),
interleaved round by round so that load from other processes hits every mode alike.

FPS is measured in the steady state: from the 20th processed frame (and the viewer's first frame) to
``--frames`` - 5, read from the daemon's own frame counter. Over the same window the process's CPU time
per frame is measured too (decoding, inference, tracking and, with a viewer, drawing and encoding): on
a shared machine other processes move FPS by more than a viewer costs, CPU time much less.

    python benchmarks/http_viewer_fps.py [--frames 300] [--rounds 5] [--threads 2] [--stream-fps 5]
"""

from __future__ import annotations

import argparse
import http.client
import logging
import platform
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

from pipeline.config import EdgeConfig
from pipeline.daemon import Daemon

DEFAULT_MODEL = "assets/models/squeezedet_kitti_int8.tflite"
DEFAULT_VIDEO = "assets/demo/highway_dashcam.mp4"
WARMUP_FRAMES = 20
MODES = ("http off", "http on, no viewer", "http on, 1 MJPEG viewer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Viewer(threading.Thread):
    """Reads the MJPEG stream as a browser would, counting frames and bytes, until stopped."""

    def __init__(self, port: int, camera: str):
        super().__init__(daemon=True)
        self.port, self.camera = port, camera
        self.boundaries = 0  # one before the first frame, then one after each
        self.bytes = 0
        self.first = threading.Event()
        self.stop_flag = threading.Event()
        self.started_at = self.ended_at = 0.0

    def run(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", f"/api/{self.camera}/stream.mjpeg")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        response = conn.getresponse()
        boundary = ("--" + response.getheader("Content-Type").split("boundary=")[1]).encode()
        tail = b""
        while not self.stop_flag.is_set():
            chunk = response.read1(65536)
            if not chunk:
                break
            self.bytes += len(chunk)
            self.boundaries += (tail + chunk).count(boundary) - tail.count(boundary)
            tail = chunk[-len(boundary):]
            if self.boundaries >= 2 and not self.first.is_set():  # the first frame is complete
                self.started_at = time.monotonic()
                self.first.set()
        self.ended_at = time.monotonic()
        conn.close()

    def fps(self) -> float:
        """Frames per second after the first one."""
        return max(self.boundaries - 2, 0) / max(self.ended_at - self.started_at, 1e-9)


def encode_cpu(daemon) -> float:
    """CPU seconds the HTTP server spent drawing and encoding frames for viewers so far."""
    return sum(c.cpu_seconds for c in daemon.http.caches.values()) if daemon.http is not None else 0.0


def run_once(mode: str, args) -> tuple[float, float, float | None, float]:
    """(daemon FPS in the steady state, CPU ms per frame, viewer FPS or None, share of the process's CPU
    time spent encoding for the viewer)."""
    port = free_port()
    cfg = EdgeConfig.model_validate({
        "camera": {"name": "bench"},
        "source": {"uri": args.video, "loop": True},
        "model": {"path": args.model, "num_threads": args.threads, "watch_interval_s": 0},
        "mqtt": {"enabled": False},
        "run": {"max_frames": args.frames},
        "http": {"enabled": mode != MODES[0], "port": port, "stream_fps": args.stream_fps},
        "logging": {"level": "WARNING"},
    })
    daemon = Daemon(cfg)
    runner = threading.Thread(target=daemon.run, daemon=True)
    viewer = Viewer(port, "bench") if mode == MODES[2] else None
    runner.start()
    if viewer is not None:
        viewer.start()
        if not viewer.first.wait(30):
            raise RuntimeError("the viewer got no frame")
    while daemon.frames < WARMUP_FRAMES:
        time.sleep(0.002)
    f0, t0, c0, e0 = daemon.frames, time.perf_counter(), time.process_time(), encode_cpu(daemon)
    end = args.frames - 5
    while daemon.frames < end and runner.is_alive():
        time.sleep(0.002)
    f1, t1, c1, e1 = daemon.frames, time.perf_counter(), time.process_time(), encode_cpu(daemon)
    if viewer is not None:
        viewer.stop_flag.set()
    runner.join(60)
    if viewer is not None:
        viewer.join(10)
    return ((f1 - f0) / (t1 - t0), (c1 - c0) / (f1 - f0) * 1000, (viewer.fps() if viewer is not None else None),
            (e1 - e0) / max(c1 - c0, 1e-9))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--video", default=DEFAULT_VIDEO)
    p.add_argument("--frames", type=int, default=300, help="frames per run (the clip loops)")
    p.add_argument("--rounds", type=int, default=5, help="each round runs every mode once")
    p.add_argument("--threads", type=int, default=2, help="interpreter threads")
    p.add_argument("--stream-fps", type=float, default=5.0, help="http.stream_fps")
    args = p.parse_args(argv)
    if args.frames < WARMUP_FRAMES + 30:
        p.error(f"--frames must be at least {WARMUP_FRAMES + 30}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
    for path in (args.model, args.video):
        if not Path(path).is_file():
            print(f"http_viewer_fps: error: {path}: not found", file=sys.stderr)
            return 2
    fps: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    viewer_fps: list[float] = []
    encode_share: list[float] = []
    for r in range(args.rounds):
        order = MODES if r % 2 == 0 else MODES[::-1]  # alternate the order: no mode always runs first
        for mode in order:
            value, cpu_ms, seen, share = run_once(mode, args)
            fps[mode].append(value)
            cpu[mode].append(cpu_ms)
            if seen is not None:
                viewer_fps.append(seen)
                encode_share.append(share)
            print(f"round {r + 1}/{args.rounds}  {mode:<24} {value:6.1f} FPS  {cpu_ms:5.1f} CPU ms/frame"
                  + (f"  (viewer received {seen:.1f} frames/s; encoding took {share:.1%} of the CPU time)"
                     if seen is not None else ""), flush=True)
    base = statistics.median(fps[MODES[1]])
    base_cpu = statistics.median(cpu[MODES[1]])
    print()
    print(f"host: {platform.machine()} {platform.system()}, python {platform.python_version()}, "
          f"{args.threads} interpreter threads, {args.frames} frames per run, stream_fps {args.stream_fps:g}")
    print()
    print("| mode | FPS per run | median FPS | vs. no viewer | median CPU ms/frame | vs. no viewer |")
    print("|---|---|---|---|---|---|")
    for mode in MODES:
        runs = ", ".join(f"{v:.1f}" for v in fps[mode])
        med, med_cpu = statistics.median(fps[mode]), statistics.median(cpu[mode])
        print(f"| {mode} | {runs} | {med:.1f} | {med / base:.3f} | {med_cpu:.1f} | {med_cpu / base_cpu:.3f} |")
    paired = [v / n for v, n in zip(fps[MODES[2]], fps[MODES[1]])]  # same round: the same background load
    print(f"\nper round, FPS with the viewer / without: {', '.join(f'{r:.3f}' for r in paired)} "
          f"(median {statistics.median(paired):.3f})")
    if viewer_fps:
        print(f"\nthe viewer received {statistics.median(viewer_fps):.1f} frames/s (median; the limit is "
              f"{args.stream_fps:g}); drawing and encoding them took {statistics.median(encode_share):.1%} of "
              "the daemon's CPU time (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
