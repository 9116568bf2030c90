"""Mobile-camera augmentation with albumentations: how a camera on a Pi or a dashboard sees the world.

Geometry (drift/zoom, horizontal flip) moves the boxes with the pixels; boxes cut below
``min_visibility`` of their area are dropped, the rest clipped to the frame. Photometric ops model
motion blur, defocus, JPEG/stream compression, low light, sensor noise and white-balance drift.
The output is still full-size: resizing to the model input is the shared inference preprocessing.
"""

from __future__ import annotations

import numpy as np

from squeezedet.config import AugmentConfig
from squeezedet.core.boxes import box_area


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
    return A.Compose(
        transforms,
        bbox_params=A.BboxParams(
            format="pascal_voc", label_fields=["labels"], min_visibility=cfg.min_visibility, clip=True
        ),
        seed=seed,
    )


def clip_boxes_to_image(boxes, width: int, height: int):
    """KITTI boxes may touch or pass the border by a fraction of a pixel; albumentations rejects that."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    b[:, 0::2] = np.clip(b[:, 0::2], 0, width)
    b[:, 1::2] = np.clip(b[:, 1::2], 0, height)
    keep = (b[:, 2] - b[:, 0] >= 1) & (b[:, 3] - b[:, 1] >= 1)
    return b, keep


def aspect_crop(image, boxes, labels, aspect: float, rng: np.random.Generator, min_visibility: float):
    """Crop a full-height window of width ``height * aspect`` at a random x; boxes cut below
    ``min_visibility`` of their area are dropped, the others clipped to the window."""
    h, w = image.shape[:2]
    cw = int(round(h * aspect))
    if cw >= w:
        return image, boxes, labels
    x0 = int(rng.integers(0, w - cw + 1))
    shifted = boxes - np.array([x0, 0, x0, 0], np.float32)
    clipped, _ = clip_boxes_to_image(shifted, cw, h)
    visible = box_area(clipped) / np.maximum(box_area(shifted), 1e-6)
    keep = (visible >= max(min_visibility, 1e-6)) & (clipped[:, 2] - clipped[:, 0] >= 1)
    return np.ascontiguousarray(image[:, x0 : x0 + cw]), clipped[keep], labels[keep]


def augment(augmenter, image: np.ndarray, boxes, labels, cfg: AugmentConfig | None = None, rng=None):
    """Apply the aspect crop (when configured) and ``augmenter`` (or nothing)
    -> (image, boxes [n,4] float32, labels [n] int64)."""
    h, w = image.shape[:2]
    boxes, keep = clip_boxes_to_image(boxes, w, h)
    labels = np.asarray(labels, np.int64).reshape(-1)[keep]
    boxes = boxes[keep]
    if augmenter is None:
        return image, boxes, labels
    if cfg is not None and cfg.aspect_crop and rng is not None and rng.random() < cfg.aspect_crop_p:
        image, boxes, labels = aspect_crop(image, boxes, labels, cfg.aspect_crop, rng, cfg.min_visibility)
    out = augmenter(image=image, bboxes=boxes, labels=labels)
    return (
        out["image"],
        np.asarray(out["bboxes"], np.float32).reshape(-1, 4),
        np.asarray(out["labels"], np.int64).reshape(-1),
    )
