"""`squeezedet augment-preview`: a PNG grid of augmented training samples with their boxes, to see
what the network will see before spending GPU hours on it."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("augment-preview", help="write a PNG grid of augmented samples with boxes drawn")
    p.add_argument("--config", required=True)
    p.add_argument("--data", help="KITTI folder (overrides data.root)")
    p.add_argument("--output", default="augment_preview.png")
    p.add_argument("--samples", type=int, default=4, help="distinct images")
    p.add_argument("--variants", type=int, default=4, help="augmented variants per image")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    import cv2

    from squeezedet.config import load_config
    from squeezedet.core.annotate import draw_detections
    from squeezedet.core.io import atomic_path
    from squeezedet.core.preprocess import read_image_rgb, resize_for_model
    from squeezedet.data.augment import augment, build_augmenter
    from squeezedet.data.kitti_dataset import load_samples
    from squeezedet.errors import ConfigError

    cfg = load_config(args.config, {"data.root": args.data} if args.data else None)
    if not cfg.data.root:
        raise ConfigError("no data folder: pass --data or set data.root")
    samples = load_samples(cfg.data.root, cfg.data.train_split, cfg.model.classes, cfg.data.class_map,
                           exclude_hard=cfg.data.exclude_hard_examples)  # the boxes training sees
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(samples), size=min(args.samples, len(samples)), replace=False)
    aug = build_augmenter(cfg.augment, seed=args.seed)
    in_w, in_h = cfg.model.input_size
    rows = []
    for i in chosen:
        s = samples[int(i)]
        img = read_image_rgb(s.image_path)
        tiles = []
        difficulty = (s.truncated, s.occluded) if cfg.data.exclude_hard_examples else None
        for v in range(args.variants):
            im, boxes, labels = augment(aug if v else None, img, s.boxes, s.labels, cfg.augment, rng,  # 1st: original
                                        difficulty)
            h, w = im.shape[:2]
            small = resize_for_model(im, (in_w, in_h))
            boxes = boxes * np.array([in_w / w, in_h / h, in_w / w, in_h / h], np.float32)
            names = [cfg.model.classes[k] for k in labels]
            tiles.append(draw_detections(small, boxes, names))
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    with atomic_path(args.output, suffix=".png") as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    log.info("wrote %s (%d images x %d variants; first column unaugmented)", args.output, len(chosen), args.variants)
    return 0
