"""Time the KITTI evaluator on a synthetic split the size of KITTI val (3,769 images, ~100 detections each).

Boxes follow KITTI's statistics roughly (1242x375 images, ~4 cars a frame, DontCare areas, truncated and
occluded objects); detections are jittered copies of the GT (some duplicates, some misses) plus clutter.
Usage: python benchmarks/kitti_eval_speed.py [--images 3769] [--dets 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from squeezedet.core.kitti import KittiObject
from squeezedet.eval.kitti_eval import evaluate

IMAGE_W, IMAGE_H = 1242.0, 375.0
#: type -> (mean count per image, width / height ratio range)
GT_MIX = {
    "Car": (4.0, (1.2, 2.6)),
    "Van": (0.4, (1.0, 2.0)),
    "Truck": (0.15, (1.0, 2.5)),
    "Pedestrian": (0.6, (0.3, 0.5)),
    "Person_sitting": (0.05, (0.5, 0.9)),
    "Cyclist": (0.2, (0.5, 1.0)),
    "DontCare": (2.0, (0.5, 3.0)),
}
GT_TYPES = np.array(list(GT_MIX))
GT_MEAN = np.array([m for m, _ in GT_MIX.values()])
RATIO_LO, RATIO_HI = (np.array([r[k] for _, r in GT_MIX.values()]) for k in (0, 1))
DET_CLASSES = ("Car", "Pedestrian", "Cyclist")
DET_MIX = (0.7, 0.2, 0.1)
DET_TYPE_INDEX = np.array([list(GT_MIX).index(c) for c in DET_CLASSES])
TRUNCATIONS = np.array([0.0, 0.0, 0.0, 0.1, 0.25, 0.45, 0.7])
OCCLUSIONS = np.array([0, 0, 1, 2, 3])


def _boxes(rng, type_index: np.ndarray) -> np.ndarray:
    """Boxes [n, 4] xyxy: log-normal heights around 45 px, bottoms below the horizon, some cut by the border."""
    n = len(type_index)
    h = np.clip(rng.lognormal(np.log(45), 0.6, n), 12, 250)
    w = h * rng.uniform(RATIO_LO[type_index], RATIO_HI[type_index])
    bottom = rng.uniform(150, IMAGE_H, n)
    x1 = rng.uniform(-0.1 * w, IMAGE_W - 0.9 * w)
    return np.stack([np.maximum(x1, 0.0), np.maximum(bottom - h, 0.0), np.minimum(x1 + w, IMAGE_W - 1), bottom], 1)


def synthesize(n_images: int, dets_per_image: int, seed: int):
    """image id -> labels and image id -> detections, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    gt, dt = {}, {}
    for i in range(n_images):
        types = np.repeat(np.arange(len(GT_TYPES)), rng.poisson(GT_MEAN))
        boxes = _boxes(rng, types)
        trunc = rng.choice(TRUNCATIONS, len(types))
        occ = rng.choice(OCCLUSIONS, len(types))
        labels, dets = [], []
        for t, box, tr, oc in zip(GT_TYPES[types].tolist(), boxes, trunc.tolist(), occ.tolist()):
            dont_care = t == "DontCare"
            labels.append(KittiObject(t, -1.0 if dont_care else tr, -1 if dont_care else oc, -10.0,
                                      tuple(box.tolist())))
            if t not in DET_CLASSES or rng.random() > 0.85:
                continue
            w, h = box[2] - box[0], box[3] - box[1]
            for k in range(rng.integers(1, 4)):  # the hit and a few lower-scoring duplicates
                x1, y1, x2, y2 = (box + rng.normal(0.0, 0.06, 4) * (w, h, w, h)).tolist()
                score = rng.uniform(0.5, 1.0) * 0.6**k
                dets.append(KittiObject(t, -1, -1, -10, (x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)), score=score))
        clutter = rng.choice(len(DET_CLASSES), max(dets_per_image - len(dets), 0), p=DET_MIX)
        scores = rng.beta(1, 6, len(clutter)).tolist()
        for c, box, score in zip(clutter.tolist(), _boxes(rng, DET_TYPE_INDEX[clutter]).tolist(), scores):
            dets.append(KittiObject(DET_CLASSES[c], -1, -1, -10, tuple(box), score=score))
        image_id = f"{i:06d}"
        gt[image_id], dt[image_id] = labels, dets
    return gt, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3769)
    ap.add_argument("--dets", type=int, default=100, help="detections per image")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    gt, dt = synthesize(args.images, args.dets, args.seed)
    t1 = time.perf_counter()
    result = evaluate(gt, dt)
    t2 = time.perf_counter()

    n_gt = sum(len(v) for v in gt.values())
    n_dt = sum(len(v) for v in dt.values())
    rows = [
        ("images", f"{args.images}"),
        ("labels (all types)", f"{n_gt}"),
        ("detections", f"{n_dt}"),
        ("synthesis time (s)", f"{t1 - t0:.2f}"),
        ("evaluate() time (s)", f"{t2 - t1:.2f}"),
        ("Car AP_R40 easy/mod/hard", " / ".join(f"{r.ap_r40:.1f}" for r in result.results["Car"].values())),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'KITTI eval benchmark':<{width}} | value")
    print(f"{'-' * width}-+-{'-' * 20}")
    for k, v in rows:
        print(f"{k:<{width}} | {v}")


if __name__ == "__main__":
    main()
