"""Decode time per frame (raw ConvDet tensor -> detections) at 1248x384: the fast decoder vs the
straightforward one it replaced (softmax/sigmoid on every anchor, NMS box by box; kept as the reference
in tests/test_postprocess_fast.py), on real model outputs for the sample clip, interleaved.

If the model's input is not 1248x384, its real output grid is resized (nearest cell, plus 1e-4 jitter so
repeated cells do not tie) to the 78x24 grid of 1248x384, so the logits keep the real model's
distribution; the header says which was used.

    python benchmarks/postprocess_speed.py [--model M] [--video V] [--frames 38] [--repeat 5]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_postprocess_fast import reference_postprocess  # noqa: E402

from squeezedet.core.anchors import anchor_grid, grid_size, scale_anchor_shapes  # noqa: E402
from squeezedet.core.postprocess import postprocess  # noqa: E402

TARGET = (1248, 384)


def raw_outputs(model_path: str, video: str, frames: int):
    """Real raw outputs of the clip's frames, at (or resized to) the 1248x384 grid, and its anchors."""
    import cv2

    from squeezedet.backends import BackendOptions, load_backend
    from squeezedet.core.preprocess import resize_for_model

    backend = load_backend(model_path, options=BackendOptions(num_threads=2))
    meta = backend.meta
    cap = cv2.VideoCapture(video)
    raws = []
    while len(raws) < frames:
        ok, bgr = cap.read()
        if not ok:
            break
        raws.append(backend(resize_for_model(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), meta.input_size)[None])[0])
    cap.release()
    if meta.input_size == TARGET:
        return raws, meta.anchors(), meta, "real outputs at 1248x384"
    gw, gh = grid_size(*TARGET)
    rows = (np.arange(gh) * raws[0].shape[0] // gh)
    cols = (np.arange(gw) * raws[0].shape[1] // gw)
    # repeated cells would give exactly tied scores, whose order neither decoder defines: jitter by 1e-4
    rng = np.random.default_rng(0)
    raws = [r[rows][:, cols] + rng.normal(0, 1e-4, (gh, gw, r.shape[-1])).astype(np.float32) for r in raws]
    anchors = anchor_grid(*TARGET, scale_anchor_shapes(meta.anchor_shapes, meta.input_size, TARGET))
    return raws, anchors, meta, f"real {meta.input_width}x{meta.input_height} outputs resized to the 1248x384 grid"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(REPO / "assets/models/squeezedet_kitti_int8.tflite"))
    p.add_argument("--video", default=str(REPO / "assets/demo/highway_dashcam.mp4"))
    p.add_argument("--frames", type=int, default=38)
    p.add_argument("--repeat", type=int, default=5, help="passes over the frames (interleaved old/new)")
    args = p.parse_args(argv)
    raws, anchors, meta, what = raw_outputs(args.model, args.video, args.frames)
    kw = dict(score_threshold=meta.score_threshold, nms_threshold=meta.nms_threshold,
              top_k_before_nms=meta.top_k, max_detections=meta.max_detections)
    size = (1280, 720)
    times = {"fast": [], "reference": []}
    dets = 0
    for _ in range(args.repeat):
        for raw in raws:
            t0 = time.perf_counter()
            got = postprocess(raw, anchors, meta.num_classes, TARGET, size, **kw)
            t1 = time.perf_counter()
            ref = reference_postprocess(raw, anchors, meta.num_classes, TARGET, size, **kw)
            t2 = time.perf_counter()
            times["fast"].append((t1 - t0) * 1e3)
            times["reference"].append((t2 - t1) * 1e3)
            assert np.array_equal(got.boxes, ref[0]) and np.array_equal(got.labels, ref[2])
            dets += len(got)
    print(f"host: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}, "
          f"numpy {np.__version__}")
    print(f"decode at 1248x384: {len(anchors):,} anchors, {meta.num_classes} classes, {len(raws)} frames x "
          f"{args.repeat} ({what}); {dets / args.repeat / len(raws):.1f} detections per frame, identical\n")
    print("| decoder | median ms | p90 ms |\n|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {np.median(t):.3f} | {np.percentile(t, 90):.3f} |")
    print(f"\nspeed-up: {np.median(times['reference']) / np.median(times['fast']):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
