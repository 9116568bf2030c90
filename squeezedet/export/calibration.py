"""Real images for int8 calibration and export checks, preprocessed exactly as at inference.

Calibration has to see what the deployed model sees: the whole frame resized by
:func:`squeezedet.core.preprocess.resize_for_model`, as uint8 RGB. The model normalises pixels inside
its graph, so the converter calibrates the very uint8 tensor the camera feeds, and the representative
dataset yields uint8 batches of one (the element type must match the model input).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from squeezedet.core.preprocess import read_image_rgb, resize_for_model
from squeezedet.data.kitti_dataset import IMAGE_EXTS, load_samples
from squeezedet.errors import DataError


def list_images(root, split: str | None = None, what: str = "image folder") -> list[Path]:
    """Images of a KITTI folder (optionally one split of it) or, failing that layout, of a plain folder."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: {what} not found")
    if (root / "training" / "image_2").is_dir() or (root / "image_2").is_dir():
        return [s.image_path for s in load_samples(root, split, [], {}, require_labels=False)]
    paths = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not paths:
        raise DataError(
            f"{root}: no images in this {what} (expected ROOT/training/image_2, ROOT/image_2 or .png/.jpg files)"
        )
    return paths


def pick(paths: Sequence[Path], count: int, what: str, seed: int = 0) -> list[Path]:
    """``count`` images spread over the list (seeded, so exports are reproducible); too few is an error."""
    if count < 1:
        raise DataError(f"{what}: asked for {count} images, need at least 1")
    if len(paths) < count:
        raise DataError(f"{what}: {len(paths)} images found, {count} asked for")
    idx = np.sort(np.random.default_rng(seed).choice(len(paths), size=count, replace=False))
    return [paths[i] for i in idx]


def calibration_paths(root, split: str | None, count: int, seed: int = 0) -> list[Path]:
    where = f"{root}" + (f" (split {split})" if split else "")
    return pick(list_images(root, split, "calibration data folder"), count, f"calibration data {where}", seed)


def load_frames(paths: Sequence[Path], input_size: tuple[int, int]) -> Iterator[np.ndarray]:
    """uint8 RGB [h, w, 3] model inputs, read and resized one at a time (300 full frames would not fit)."""
    for p in paths:
        yield resize_for_model(read_image_rgb(p), input_size)


def representative_dataset(paths: Sequence[Path], input_size: tuple[int, int]) -> Callable[[], Iterator[list]]:
    """The converter's representative_dataset: a callable yielding ``[uint8 [1, h, w, 3]]`` per image."""

    def generate():
        for frame in load_frames(paths, input_size):
            yield [frame[None]]

    return generate
