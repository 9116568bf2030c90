"""Recovery of a pruned model by distillation from the unpruned one, on frames without labels.

The unpruned model is the teacher (squeezedet.train.distill): it labels every frame, every augmented view
of a frame included, so a folder of camera images or a video is the data, and recovery cannot overfit a
handful of labelled images. Augmentation (flip, zoom into a random window, brightness and contrast) turns
a few dozen frames into many views; the teacher sees the same view as the student.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from squeezedet.errors import DataError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def video_frames(path: Path, every: int) -> list[np.ndarray]:
    """Every ``every``-th frame of a video file as uint8 RGB; an unreadable file is a DataError naming it."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames, index = [], 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if index % every == 0:
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        cap.release()
    if not frames:
        raise DataError(f"{path}: no frames could be read from this video")
    return frames


def read_frames(source, input_size: tuple[int, int], every: int = 1, split: str | None = None,
                limit: int | None = None) -> np.ndarray:
    """Unlabeled frames [N, H, W, 3] uint8 at the model input: a video (every ``every``-th frame), a plain
    image folder or a KITTI folder (optionally one ``split``; its labels are not read)."""
    from squeezedet.core.preprocess import read_image_rgb, resize_for_model
    from squeezedet.export.calibration import list_images

    source = Path(source)
    if every < 1:
        raise DataError(f"{source}: take every N-th frame with N >= 1, got {every}")
    if source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES:
        images = video_frames(source, every)
    elif source.is_dir():
        images = (read_image_rgb(p) for p in list_images(source, split, "frames folder")[::every])
    else:
        raise DataError(f"{source}: not a video ({', '.join(VIDEO_SUFFIXES)}) or an image folder")
    frames = [resize_for_model(im, input_size) for im in images]
    return np.stack(frames[:limit] if limit else frames)


def augment(frame: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """A random view of a uint8 frame, same size: flip, zoom into a window of 80-100 % of each side,
    brightness +-20 and contrast x0.8-1.2 (stateless, so a seed replays it)."""
    h, w = tf.shape(frame)[0], tf.shape(frame)[1]
    seeds = tf.random.experimental.stateless_split(seed, 5)
    image = tf.cast(frame, tf.float32)
    image = tf.image.stateless_random_flip_left_right(image, seeds[0])
    side = tf.random.stateless_uniform([], seeds[1], 0.8, 1.0)
    corner = tf.random.stateless_uniform([2], seeds[2], 0.0, 1.0) * (1.0 - side)
    box = tf.stack([corner[0], corner[1], corner[0] + side, corner[1] + side])[None]
    image = tf.image.crop_and_resize(image[None], box, [0], tf.stack([h, w]))[0]
    image = tf.image.stateless_random_contrast(image, 0.8, 1.2, seeds[3])
    image = image + tf.random.stateless_uniform([], seeds[4], -20.0, 20.0)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def frame_dataset(frames: np.ndarray, batch_size: int, seed: int = 0) -> tf.data.Dataset:
    """Endless shuffled batches of augmented views of ``frames`` (images only: no labels)."""
    ds = tf.data.Dataset.from_tensor_slices(frames).repeat()
    ds = ds.shuffle(len(frames), seed=seed).enumerate()
    ds = ds.map(lambda i, f: augment(f, tf.stack([tf.cast(i, tf.int32), seed])), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def make_distiller(student: keras.Model, teacher: keras.Model, cfg):
    """A Distiller whose loss is the teacher's terms alone (weight 1, the config's temperature)."""
    from squeezedet.train.distill import Distiller
    from squeezedet.train.loss import loss_from_config

    return Distiller(student, teacher, loss_from_config(cfg, cfg.model.anchors()),
                     temperature=cfg.train.distill_temperature, weight=1.0, name="recovery")


def teacher_gap(distiller, frames: np.ndarray, batch_size: int = 4) -> dict[str, float]:
    """Mean teacher terms (soft classes, confidence hint, box hint and their sum) over ``frames`` as they
    are, no augmentation: how far the student is from its teacher."""
    totals: dict[str, float] = {}
    batches = range(0, len(frames), batch_size)
    for start in batches:
        x = frames[start : start + batch_size]
        terms = distiller.distillation_terms(tf.cast(distiller.student(x, training=False), tf.float32),
                                             tf.cast(distiller.teacher(x, training=False), tf.float32))
        for name, value in terms.items():
            totals[name] = totals.get(name, 0.0) + float(value) / len(batches)
    totals["total"] = sum(totals.values())
    return totals


def recover(distiller, frames: np.ndarray, steps: int, batch_size: int = 4, learning_rate: float = 1e-4,
            seed: int = 0, verbose: int = 1, steps_per_epoch: int = 50) -> list[dict]:
    """Train the distiller's student ``steps`` steps on augmented ``frames`` (Adam, cosine decay to 0,
    global-norm clipping); returns the per-epoch logs."""
    keras.utils.set_random_seed(seed)
    per_epoch = max(1, min(steps_per_epoch, steps))
    epochs = math.ceil(steps / per_epoch)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * per_epoch)
    distiller.compile(optimizer=keras.optimizers.Adam(schedule, global_clipnorm=5.0))
    history = distiller.fit(frame_dataset(frames, batch_size, seed), epochs=epochs, steps_per_epoch=per_epoch,
                            shuffle=False, verbose=verbose)
    logs = [{k: float(v[i]) for k, v in history.history.items()} for i in range(epochs)]
    log.info("recovery: %d steps of batch %d on %d frames, teacher loss %.4f -> %.4f", epochs * per_epoch,
             batch_size, len(frames), logs[0]["distill_loss"], logs[-1]["distill_loss"])
    return logs
