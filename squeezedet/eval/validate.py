"""`squeezedet val` and in-training validation: run a model over a split, write KITTI result files,
evaluate them with the official rules."""

from __future__ import annotations

import logging
from pathlib import Path


from squeezedet.core.kitti import KittiObject, kitti_name_for, write_results

log = logging.getLogger(__name__)


def detections_to_objects(dets, class_names) -> list[KittiObject]:
    return [
        KittiObject(type=kitti_name_for(class_names[int(l)]), truncated=-1, occluded=-1, alpha=-10,
                    bbox=tuple(float(v) for v in b), score=float(s))
        for b, s, l in zip(dets.boxes, dets.scores, dets.labels)
    ]


def predict_split(predictor, samples, result_dir, batch_size: int = 8, quiet: bool = False) -> dict:
    """Predict every sample (low score threshold, as AP needs the whole PR curve) and write results."""
    from tqdm import tqdm

    from squeezedet.core.preprocess import read_image_rgb

    dt = {}
    result_dir = Path(result_dir)
    for start in tqdm(range(0, len(samples), batch_size), desc="val", unit="batch", disable=quiet):
        chunk = samples[start : start + batch_size]
        images = [read_image_rgb(s.image_path) for s in chunk]
        for s, dets in zip(chunk, predictor.predict_batch(images, score_threshold=0.005)):
            names = [kitti_name_for(predictor.class_names[int(l)]) for l in dets.labels]
            write_results(result_dir / f"{s.image_id}.txt", names, dets.boxes, dets.scores)
            dt[s.image_id] = detections_to_objects(dets, predictor.class_names)
    return dt


def validate(predictor, samples, output_dir, quiet: bool = False):
    """Predict, write ``output_dir/results/*.txt``, evaluate -> EvalResult (+ metrics.json, PR plot)."""
    from squeezedet.eval.commands import evaluate_and_report

    output_dir = Path(output_dir)
    dt = predict_split(predictor, samples, output_dir / "results", quiet=quiet)
    gt = {s.image_id: s.objects for s in samples}
    classes = [kitti_name_for(c) for c in predictor.class_names]
    return evaluate_and_report(gt, dt, classes, output_dir, quiet=quiet)


def validate_model(cfg, model, samples, output_dir, quiet: bool = False):
    """Validation of an in-memory Keras model (used by the training callback)."""
    from squeezedet.inference import KerasPredictor

    return validate(KerasPredictor(cfg, model=model), samples, output_dir, quiet=quiet)
