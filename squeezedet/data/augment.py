"""Mobile-camera augmentation with albumentations: how a camera on a Pi or a dashboard sees the world.

Geometry (drift/zoom, horizontal flip) moves the boxes with the pixels; boxes cut below
``min_visibility`` of their area are dropped, the rest clipped to the frame. When training leaves KITTI's
harder-than-hard objects out (``data.exclude_hard_examples``), an object that the augmentation makes one
(shrunk under 25 px, or cut so that over half of it is outside) is left out too, as it would have been
in a frame seen that way. Photometric ops model
motion blur, defocus, JPEG/stream compression, low light, sensor noise and white-balance drift.
The output is still full-size: resizing to the model input is the shared inference preprocessing.
"""

from __future__ import annotations

import numpy as np

from squeezedet.config import AugmentConfig
from squeezedet.core.boxes import box_area
from squeezedet.core.kitti import kitti_levels


def build_augmenter(cfg: AugmentConfig, seed: int | None = None):
    """An albumentations Compose for ``cfg``; None when augmentation is disabled."""
    if not cfg.enabled:
        return None
    import albumentations as A
    import cv2

    t = cfg.drift_translate
    transforms = [
        A.Affine(
            scale=cfg.drift_scale,
            translate_percent={"x": (-t, t), "y": (-t, t)},
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            p=cfg.drift_p,
        ),
        A.HorizontalFlip(p=cfg.hflip_p),
        A.MotionBlur(blur_limit=(3, 9), p=cfg.motion_blur_p),
        A.Defocus(radius=(1, 3), alias_blur=(0.1, 0.3), p=cfg.defocus_p),
        A.Sequential(
            [
                A.RandomBrightnessContrast(brightness_limit=(-0.45, -0.15), contrast_limit=(-0.3, 0.0), p=1.0),
                A.RandomGamma(gamma_limit=cfg.gamma_limit, p=1.0),
            ],
            p=cfg.low_light_p,
        ),
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.3, hue=0.03, p=cfg.color_jitter_p),
        A.GaussNoise(std_range=cfg.noise_std, p=cfg.noise_p),
        A.ImageCompression(quality_range=cfg.jpeg_quality, p=cfg.jpeg_p),
    ]
    # Boxes are clipped by albumentations; each box's four corners ride along as keypoints (never
    # removed) so that the area it would have unclipped, hence its visible fraction, is known afterwards.
    return A.Compose(
        transforms,
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels", "index"], clip=True),
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
        seed=seed,
    )


def clip_boxes_to_image(boxes, width: int, height: int):
    """KITTI boxes may touch or pass the border by a fraction of a pixel; albumentations rejects that."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    b[:, 0::2] = np.clip(b[:, 0::2], 0, width)
    b[:, 1::2] = np.clip(b[:, 1::2], 0, height)
    keep = (b[:, 2] - b[:, 0] >= 1) & (b[:, 3] - b[:, 1] >= 1)
    return b, keep


def _crop_boxes(boxes, x0: int, width: int, height: int):
    """Boxes of a full-height window starting at x0 -> (clipped boxes, visible fraction of each)."""
    shifted = boxes - np.array([x0, 0, x0, 0], np.float32)
    clipped, _ = clip_boxes_to_image(shifted, width, height)
    return clipped, box_area(clipped) / np.maximum(box_area(shifted), 1e-6)


def _aspect_window(image, boxes, aspect: float, rng):
    """(window image, clipped boxes, visible fractions, x0) of a random full-height aspect crop."""
    h, w = image.shape[:2]
    cw = int(round(h * aspect))
    if cw >= w:
        return image, boxes, np.ones(len(boxes)), 0
    x0 = int(rng.integers(0, w - cw + 1))
    clipped, visible = _crop_boxes(boxes, x0, cw, h)
    return np.ascontiguousarray(image[:, x0 : x0 + cw]), clipped, visible, x0


def _corners(boxes) -> np.ndarray:
    """[n, 4] xyxy -> [4n, 2] corner points (x1y1, x2y1, x2y2, x1y2 of each box in turn)."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1).reshape(-1, 2)


def augment(augmenter, image: np.ndarray, boxes, labels, cfg: AugmentConfig | None = None, rng=None,
            difficulty=None):
    """Apply the aspect crop (when configured) and ``augmenter`` (or nothing)
    -> (image, boxes [n,4] float32, labels [n] int64).

    ``difficulty``: (truncated [n], occluded [n]) of the boxes, KITTI's; given, a box whose KITTI level
    after augmentation is 4 is dropped (its truncation grows with the part the augmentation cut off)."""
    h, w = image.shape[:2]
    boxes, keep = clip_boxes_to_image(boxes, w, h)
    labels = np.asarray(labels, np.int64).reshape(-1)[keep]
    boxes = boxes[keep]
    if augmenter is None:
        return image, boxes, labels
    index = np.flatnonzero(keep)  # each box's row in the caller's arrays
    visible = np.ones(len(boxes))
    if cfg is not None and cfg.aspect_crop and rng is not None and rng.random() < cfg.aspect_crop_p:
        image, boxes, visible, _ = _aspect_window(image, boxes, cfg.aspect_crop, rng)
        inside = (visible > 0) & (boxes[:, 2] - boxes[:, 0] >= 1)
        boxes, labels, index, visible = boxes[inside], labels[inside], index[inside], visible[inside]
    out = augmenter(image=image, bboxes=boxes, labels=labels, index=np.arange(len(boxes)), keypoints=_corners(boxes))
    boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
    kept = np.asarray(out["index"], np.int64).reshape(-1)
    corners = np.asarray(out["keypoints"], np.float32).reshape(-1, 4, 2)[kept]
    unclipped = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    visible = visible[kept] * box_area(boxes) / np.maximum(box_area(unclipped), 1e-6)
    # A box wholly inside comes out of the warp with float noise either side of 1; read as "all of it", or
    # an object labelled truncated 0.50 would turn harder than hard at random.
    visible = np.where(visible > 1 - 1e-4, 1.0, visible)
    ok = visible >= max(cfg.min_visibility if cfg is not None else 0.0, 1e-6)
    if difficulty is not None:
        truncated, occluded = (np.asarray(a).reshape(-1)[index[kept]] for a in difficulty)
        levels = kitti_levels(boxes[:, 3] - boxes[:, 1], 1 - (1 - truncated) * visible, occluded)
        ok &= levels <= 3
    return out["image"], boxes[ok], np.asarray(out["labels"], np.int64).reshape(-1)[ok]
