"""Raw interpreter FPS vs end-to-end daemon FPS on the sample clip, in one run.

The interpreter figure is ``invoke()`` alone on frames already decoded and resized: the ceiling.
The daemon figure is the real thing - decode on the source thread, resize, inference, decode/NMS,
tracking, payloads (and MQTT with --mqtt) - so the ratio shows how well the stages overlap.

    python benchmarks/daemon_fps.py [--model M] [--video V] [--frames N] [--threads T] [--mqtt HOST:PORT]
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.config import EdgeConfig
from pipeline.daemon import Daemon
from squeezedet.core.metadata import read_metadata
from squeezedet.core.preprocess import resize_for_model
from squeezedet.core.runtime import TFLiteModel, runtime_name
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


def interpreter_fps(model_path: str, video: str, frames: int, threads: int) -> tuple[float, float]:
    """(fps, ms per frame) of bare inference, after two warm-up runs."""
    meta = read_metadata(model_path)
    model = TFLiteModel(model_path, threads)
    batch = read_frames(video, frames, meta.input_size)
    for x in batch[:2]:
        model(x)
    t0 = time.perf_counter()
    for i in range(frames):
        model(batch[i % len(batch)])
    elapsed = time.perf_counter() - t0
    return frames / elapsed, elapsed / frames * 1000


def daemon_fps(model_path: str, video: str, frames: int, threads: int, mqtt: str | None) -> tuple[float, int, int]:
    """(fps, frames processed, frames dropped) of the full daemon on the clip (looped if short)."""
    host, _, port = (mqtt or "localhost:1883").partition(":")
    cfg = EdgeConfig.model_validate({
        "camera": {"name": "bench"},
        "source": {"uri": video, "loop": True},
        "model": {"path": model_path, "num_threads": threads, "watch_interval_s": 0},
        "mqtt": {"enabled": mqtt is not None, "host": host, "port": int(port or 1883)},
        "run": {"max_frames": frames},
        "logging": {"level": "WARNING"},
    })
    daemon = Daemon(cfg)
    t0 = time.perf_counter()
    daemon.run()
    elapsed = time.perf_counter() - t0
    return daemon.frames / elapsed, daemon.frames, sum(w.source.dropped for w in daemon.cameras.values())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--video", default=DEFAULT_VIDEO)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--mqtt", default=None, metavar="HOST:PORT", help="also publish to this broker")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
    for path in (args.model, args.video):
        if not Path(path).is_file():
            print(f"daemon_fps: error: {path}: not found", file=sys.stderr)
            return 2
    try:
        raw_fps, raw_ms = interpreter_fps(args.model, args.video, args.frames, args.threads)
        fps, done, dropped = daemon_fps(args.model, args.video, args.frames, args.threads, args.mqtt)
    except SqueezeDetError as exc:
        print(f"daemon_fps: error: {exc}", file=sys.stderr)
        return 2
    meta = read_metadata(args.model)
    print(f"host:        {platform.machine()} {platform.system()} python {platform.python_version()}")
    print(f"model:       {args.model} ({meta.model_id or 'no id'}, {meta.quantization}, "
          f"{meta.input_width}x{meta.input_height}, runtime {runtime_name()}, {args.threads} threads)")
    print(f"video:       {args.video}")
    print(f"interpreter: {raw_fps:7.1f} FPS  ({raw_ms:.1f} ms/frame, invoke only)")
    print(f"daemon:      {fps:7.1f} FPS  ({done} frames end to end, {dropped} dropped, "
          f"mqtt {'on' if args.mqtt else 'off'})")
    print(f"ratio:       {fps / raw_fps:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
