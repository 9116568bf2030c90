"""Index a KITTI object folder: which images, which labels, mapped to the configured classes.

Accepted layouts: ``ROOT/training/image_2`` + ``ROOT/training/label_2`` (as KITTI ships it) or
``ROOT/image_2`` + ``ROOT/label_2``. Split files (one id per line) are looked up relative to ROOT,
then to the image folder's parent. No TensorFlow here: evaluation and export reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from squeezedet.core.kitti import KittiObject, read_labels, read_split
from squeezedet.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg")


@dataclass
class Sample:
    image_id: str
    image_path: Path
    label_path: Path | None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # xyxy, trained classes
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    truncated: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float64))  # per box, KITTI's
    occluded: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))  # per box, KITTI's 0..3
    objects: list[KittiObject] = field(default_factory=list)  # every object, DontCare included


def find_kitti_dirs(root) -> tuple[Path, Path]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    for base in (root / "training", root):
        if (base / "image_2").is_dir():
            return base / "image_2", base / "label_2"
    raise DataError(f"{root}: no image_2/ folder (expected ROOT/training/image_2 or ROOT/image_2)")


def resolve_split(root, split) -> Path:
    """A split given as a path, or a file name relative to ROOT or ROOT/training."""
    p = Path(split)
    if p.is_file():
        return p
    for base in (Path(root), Path(root) / "training", Path(root) / "ImageSets"):
        if (base / p).is_file():
            return base / p
        if (base / f"{p}.txt").is_file():
            return base / f"{p}.txt"
    raise DataError(f"{split}: split file not found (looked in {root})")


def _image_path(image_dir: Path, image_id: str) -> Path:
    for ext in IMAGE_EXTS:
        p = image_dir / f"{image_id}{ext}"
        if p.is_file():
            return p
    raise DataError(f"{image_dir / image_id}.{{{','.join(e[1:] for e in IMAGE_EXTS)}}}: image not found (listed in split)")


def load_samples(
    root, split, class_names, class_map: dict[str, str], require_labels: bool = True, exclude_hard: bool = False
) -> list[Sample]:
    """Samples of a split with boxes mapped to class indices; errors name the file and line.

    ``exclude_hard`` leaves objects of KITTI level 4 out of ``boxes`` (the training targets,
    ``data.exclude_hard_examples``); ``objects`` always keeps every object for evaluation."""
    image_dir, label_dir = find_kitti_dirs(root)
    ids = read_split(resolve_split(root, split)) if split else sorted(
        p.stem for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS
    )
    if not ids:
        raise DataError(f"{root}: split {split!r} lists no images")
    index = {name: i for i, name in enumerate(class_names)}
    samples = []
    for image_id in ids:
        img = _image_path(image_dir, image_id)
        lab = label_dir / f"{image_id}.txt"
        objs: list[KittiObject] = []
        if lab.is_file():
            objs = read_labels(lab)
        elif require_labels:
            raise DataError(f"{lab}: label file not found")
        boxes, labels, truncated, occluded = [], [], [], []
        for o in objs:
            cls = class_map.get(o.type)
            if cls is None:
                continue
            if cls not in index:
                raise DataError(f"{lab}: class_map maps {o.type} to unknown class {cls!r}")
            if exclude_hard and o.level > 3:
                continue
            boxes.append(o.bbox)
            labels.append(index[cls])
            truncated.append(o.truncated)
            occluded.append(o.occluded)
        samples.append(
            Sample(
                image_id=image_id,
                image_path=img,
                label_path=lab if lab.is_file() else None,
                boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                labels=np.asarray(labels, np.int64),
                truncated=np.asarray(truncated, np.float64),  # float32 would rate 0.15 / 0.30 one level harder
                occluded=np.asarray(occluded, np.int64),
                objects=objs,
            )
        )
    return samples
