"""tf.data input pipeline: parallel decode -> cache -> augment + resize + encode targets -> batch.

Decoding (PNG/JPEG) runs in OpenCV (the decoder of inference and the device), in parallel, and is
cached (memory or a file) so later epochs skip it. Augmentation (albumentations) and target assignment
are numpy and run through ``tf.numpy_function`` in parallel calls; OpenCV releases the GIL, so they
overlap with training.
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from squeezedet.config import Config
from squeezedet.core.preprocess import read_image_rgb, resize_for_model
from squeezedet.data.augment import augment, build_augmenter
from squeezedet.data.kitti_dataset import Sample
from squeezedet.data.targets import encode_targets, target_width

log = logging.getLogger(__name__)


class SampleEncoder:
    """numpy side of the pipeline: one decoded image + its boxes -> (model input, dense targets)."""

    def __init__(self, cfg: Config, samples: list[Sample], training: bool, seed: int = 0):
        self.cfg = cfg
        self.samples = samples
        self.input_size = cfg.model.input_size
        self.num_classes = len(cfg.model.classes)
        self.anchors = cfg.model.anchors()
        self.augmenter = build_augmenter(cfg.augment, seed=seed) if training else None
        self.rng = np.random.default_rng(seed)

    def __call__(self, index, image):
        s = self.samples[int(index)]
        difficulty = (s.truncated, s.occluded) if self.cfg.data.exclude_hard_examples else None
        img, boxes, labels = augment(self.augmenter, image, s.boxes, s.labels, self.cfg.augment, self.rng, difficulty)
        h, w = img.shape[:2]
        in_w, in_h = self.input_size
        x = resize_for_model(img, self.input_size)
        if self.cfg.data.box_size == "inclusive":  # the far edge pixel counts, in the image's own pixels
            boxes = boxes + np.array([0, 0, 1, 1], np.float32)
        boxes = boxes * np.array([in_w / w, in_h / h, in_w / w, in_h / h], np.float32)
        y = encode_targets(boxes, labels, self.anchors, self.num_classes)
        return x, y


def _decode(path):
    """The file's pixels as every other consumer sees them: OpenCV's decoder (``read_image_rgb``), not
    TensorFlow's, whose JPEG IDCT differs by up to 8 levels on most pixels (enough to move a trained
    model's AP by 2 points between training and the device)."""
    image = tf.numpy_function(lambda p: read_image_rgb(p.decode()), [path], tf.uint8, stateful=False)
    image.set_shape([None, None, 3])
    return image


def make_dataset(
    cfg: Config,
    samples: list[Sample],
    batch_size: int,
    training: bool,
    seed: int = 0,
    repeat: bool | None = None,
) -> tf.data.Dataset:
    """Batched (uint8 images [B,H,W,3], float32 targets [B,N,9+C]) dataset over ``samples``."""
    encoder = SampleEncoder(cfg, samples, training=training, seed=seed)
    n_anchors = len(encoder.anchors)
    in_w, in_h = cfg.model.input_size
    width = target_width(encoder.num_classes)
    paths = [str(s.image_path) for s in samples]
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(samples), dtype=np.int64), paths))
    ds = ds.map(lambda i, p: (i, _decode(p)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    cache = cfg.data.cache
    if cache:
        ds = ds.cache("" if cache is True else str(cache))
    if training:
        ds = ds.shuffle(min(len(samples), cfg.data.shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    if repeat if repeat is not None else training:
        ds = ds.repeat()

    def encode(i, img):
        x, y = tf.numpy_function(encoder, [i, img], [tf.uint8, tf.float32], stateful=training)
        x.set_shape([in_h, in_w, 3])
        y.set_shape([n_anchors, width])
        return x, y

    ds = ds.map(encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    ds = ds.batch(batch_size, drop_remainder=training)
    return ds.prefetch(tf.data.AUTOTUNE)
