"""Validation: run a predictor over a split, write KITTI result files, evaluate with the official rules.

Used by `squeezedet val` (Keras weights or .tflite) and by the training loop's validation callback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from squeezedet.core.kitti import KittiObject, kitti_name_for, write_results
from squeezedet.eval.report import evaluate_and_report

log = logging.getLogger(__name__)

#: AP needs the whole precision-recall curve: keep low-score detections (the devkit's own practice).
EVAL_SCORE_THRESHOLD = 0.005


def results_from_detections(boxes, labels, scores, class_names: Sequence[str]) -> list[KittiObject]:
    """One image's detections (xyxy pixels, class indices, scores) as KITTI result objects.

    Our lower-case class names become KITTI types (car -> Car), so they match the labels' types.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if not len(boxes) == len(labels) == len(scores):
        raise ValueError(f"{len(boxes)} boxes, {len(labels)} labels and {len(scores)} scores")
    types = [kitti_name_for(n) for n in class_names]
    return [
        KittiObject(type=types[int(c)], truncated=-1.0, occluded=-1, alpha=-10.0,
                    bbox=tuple(b.tolist()), score=float(s))
        for b, c, s in zip(boxes, labels, scores)
    ]


def predict_split(predictor, samples, result_dir, batch_size: int = 8, quiet: bool = False) -> dict:
    """Predict every sample, write ``result_dir/<id>.txt``; returns {image id: [KittiObject]}."""
    from tqdm import tqdm

    from squeezedet.core.preprocess import read_image_rgb

    dt = {}
    result_dir = Path(result_dir)
    for start in tqdm(range(0, len(samples), batch_size), desc="val", unit="batch", disable=quiet):
        chunk = samples[start : start + batch_size]
        images = [read_image_rgb(s.image_path) for s in chunk]
        for s, dets in zip(chunk, predictor.predict_batch(images, score_threshold=EVAL_SCORE_THRESHOLD)):
            objs = results_from_detections(dets.boxes, dets.labels, dets.scores, predictor.class_names)
            write_results(result_dir / f"{s.image_id}.txt", [o.type for o in objs], dets.boxes, dets.scores)
            dt[s.image_id] = objs
    return dt


def validate(predictor, samples, output_dir, quiet: bool = False):
    """Predict, write ``output_dir/results/*.txt``, evaluate -> EvalResult (+ metrics.json, pr_curves.png)."""
    output_dir = Path(output_dir)
    dt = predict_split(predictor, samples, output_dir / "results", quiet=quiet)
    gt = {s.image_id: s.objects for s in samples}
    return evaluate_and_report(gt, dt, [kitti_name_for(c) for c in predictor.class_names], output_dir)


def validate_model(cfg, model, samples, output_dir):
    """Validation of an in-memory Keras model (the training callback's)."""
    from squeezedet.inference import KerasPredictor

    return validate(KerasPredictor(cfg, model=model), samples, output_dir, quiet=True)
