"""`squeezedet anchors`: fit anchor shapes to a dataset's boxes and write them into a config."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("anchors", help="k-means (IoU distance) anchor shapes from a KITTI folder's boxes")
    p.add_argument("--data", required=True, help="KITTI folder")
    p.add_argument("--config", help="base config (input size, classes, class map, split); default: built-in")
    p.add_argument("-k", type=int, default=9, help="number of anchor shapes (default 9)")
    p.add_argument("--split", help="split file (default: the config's data.train_split)")
    p.add_argument("--write", help="write a copy of the config with these anchors to this YAML path")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from squeezedet.config import load_config, load_yaml
    from squeezedet.core.io import atomic_write_text
    from squeezedet.core.kmeans_anchors import kmeans_anchors, mean_best_iou
    from squeezedet.data.kitti_dataset import load_samples
    from squeezedet.errors import DataError

    cfg = load_config(args.config)
    split = args.split or cfg.data.train_split
    samples = load_samples(args.data, split, cfg.model.classes, cfg.data.class_map)
    import cv2

    wh = []
    in_w, in_h = cfg.model.input_size
    for s in samples:
        if not len(s.boxes):
            continue
        img = cv2.imread(str(s.image_path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise DataError(f"{s.image_path}: cannot decode image")
        h, w = img.shape[:2]
        b = s.boxes
        wh.append(np.stack([(b[:, 2] - b[:, 0]) * in_w / w, (b[:, 3] - b[:, 1]) * in_h / h], axis=1))
    if not wh:
        raise DataError(f"{args.data}: split {split!r} has no boxes of classes {cfg.model.classes}")
    wh = np.concatenate(wh)
    if len(wh) < args.k:
        raise DataError(f"{args.data}: only {len(wh)} boxes, fewer than -k {args.k}")
    anchors = kmeans_anchors(wh, args.k, seed=args.seed)
    base = mean_best_iou(wh, cfg.model.anchor_shapes)
    new = mean_best_iou(wh, anchors)
    print(f"{len(wh)} boxes from {len(samples)} images, scaled to the {in_w}x{in_h} model input")
    print(f"mean IoU with current anchors ({len(cfg.model.anchor_shapes)}): {base:.4f}")
    print(f"mean IoU with k-means anchors ({args.k}):  {new:.4f}")
    print("anchor_shapes:")
    for w, h in anchors:
        print(f"  - [{w:.1f}, {h:.1f}]")
    if args.write:
        import yaml

        raw = load_yaml(args.config) if args.config else {}
        raw.setdefault("model", {})["anchor_shapes"] = [[round(float(w), 1), round(float(h), 1)] for w, h in anchors]
        atomic_write_text(args.write, yaml.safe_dump(raw, sort_keys=False))
        load_config(args.write)  # the written file must itself be valid
        log.info("wrote %s", args.write)
    return 0
