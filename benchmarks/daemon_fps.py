"""Back-end FPS vs end-to-end daemon FPS on the sample clip, in one run.

The back-end figure is inference alone (``backend(batch)``) on frames already decoded and resized: the
ceiling. The daemon figure is the real thing - video decode on the source thread, colour conversion,
resize, inference, decode/NMS, tracking, payloads (and MQTT with --mqtt) - measured in steady state
(from its --warmup'th frame to its last), so the ratio shows how well the stages overlap.

    python benchmarks/daemon_fps.py [--model M] [--backend B] [--video V] [--frames N] [--threads T] [--mqtt HOST:PORT]
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np

from pipeline.config import EdgeConfig
from pipeline.daemon import Daemon
from squeezedet.backends import BackendOptions, load_backend
from squeezedet.core.metadata import read_metadata
from squeezedet.core.preprocess import resize_for_model
from squeezedet.errors import SqueezeDetError

DEFAULT_MODEL = "assets/models/squeezedet_kitti_int8.tflite"
DEFAULT_VIDEO = "assets/demo/highway_dashcam.mp4"


def read_frames(video: str, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(video)
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(resize_for_model(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)[None])
    cap.release()
    if not frames:
        raise SqueezeDetError(f"{video}: no decodable frames")
    return frames


def backend_fps(model_path: str, backend: str, video: str, frames: int, threads: int) -> tuple[float, float, str]:
    """(fps, ms per frame, engine) of bare inference, after two warm-up runs."""
    meta = read_metadata(model_path)
    engine = load_backend(model_path, backend, BackendOptions(num_threads=threads), meta=meta)
    batch = read_frames(video, frames, meta.input_size)
    for x in batch[:2]:
        engine(x)
    t0 = time.perf_counter()
    for i in range(frames):
        engine(batch[i % len(batch)])
    elapsed = time.perf_counter() - t0
    return frames / elapsed, elapsed / frames * 1000, engine.describe()


def daemon_fps(model_path: str, backend: str, video: str, frames: int, threads: int, mqtt: str | None,
               warmup: int, pipeline: str = "auto") -> tuple[float, int, int]:
    """(steady-state fps, frames processed, frames dropped) of the full daemon on the clip (looped)."""
    host, _, port = (mqtt or "localhost:1883").partition(":")
    cfg = EdgeConfig.model_validate({
        "camera": {"name": "bench"},
        "source": {"uri": video, "loop": True},
        "model": {"path": model_path, "backend": backend, "num_threads": threads, "watch_interval_s": 0},
        "mqtt": {"enabled": mqtt is not None, "host": host, "port": int(port or 1883)},
        "run": {"max_frames": frames + warmup, "pipeline": pipeline},
        "logging": {"level": "WARNING"},
    })
    daemon = Daemon(cfg)
    runner = threading.Thread(target=daemon.run, name="daemon-under-test")
    runner.start()
    marks = []  # (time, frames) from the warm-up frame on
    while runner.is_alive():
        done = daemon.frames
        if done >= warmup and (not marks or marks[-1][1] != done):
            marks.append((time.perf_counter(), done))
        time.sleep(0.002)
    runner.join()
    marks.append((time.perf_counter(), daemon.frames))
    (t0, f0), f1 = marks[0], max(f for _, f in marks)
    end = next(t for t, f in marks if f == f1)
    dropped = sum(w.source.dropped for w in daemon.cameras.values())
    return (f1 - f0) / max(end - t0, 1e-9), daemon.frames, dropped


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--backend", default="auto")
    p.add_argument("--video", default=DEFAULT_VIDEO)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--warmup", type=int, default=5, help="daemon frames before the clock starts")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mqtt", default=None, metavar="HOST:PORT", help="also publish to this broker")
    p.add_argument("--pipeline", default="auto", choices=("auto", "on", "off"), help="the daemon's run.pipeline")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
    for path in (args.model, args.video):
        if not Path(path).is_file():
            print(f"daemon_fps: error: {path}: not found", file=sys.stderr)
            return 2
    try:
        raw_fps, raw_ms, engine = backend_fps(args.model, args.backend, args.video, args.frames, args.threads)
        fps, done, dropped = daemon_fps(args.model, args.backend, args.video, args.frames, args.threads, args.mqtt,
                                        args.warmup, args.pipeline)
    except SqueezeDetError as exc:
        print(f"daemon_fps: error: {exc}", file=sys.stderr)
        return 2
    meta = read_metadata(args.model)
    print(f"host:        {platform.machine()} {platform.system()} python {platform.python_version()}")
    print(f"model:       {args.model} ({meta.model_id or 'no id'}, {meta.quantization}, "
          f"{meta.input_width}x{meta.input_height}, {engine}, {args.threads} threads)")
    print(f"video:       {args.video}")
    print(f"back end:    {raw_fps:7.1f} FPS  ({raw_ms:.1f} ms/frame, inference only)")
    print(f"daemon:      {fps:7.1f} FPS  ({done} frames end to end, {dropped} dropped, "
          f"mqtt {'on' if args.mqtt else 'off'}, pipeline {args.pipeline}, steady state after {args.warmup})")
    print(f"ratio:       {fps / raw_fps:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
