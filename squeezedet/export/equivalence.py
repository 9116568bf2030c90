"""Does the exported model compute what the Keras model computes? Raw outputs and decoded detections, side
by side, run through the back end that deploys the file (LiteRT, ONNX Runtime or OpenVINO).

Run after every export on images the calibration never saw; the numbers go to the log and to
``export_report.json`` next to the model (one entry per model file, so several exports can share a
folder).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from squeezedet.core.boxes import iou_matrix
from squeezedet.core.io import atomic_write_json
from squeezedet.core.metadata import read_metadata
from squeezedet.core.postprocess import Detections, postprocess
from squeezedet.core.preprocess import resize_for_model

log = logging.getLogger(__name__)

REPORT_NAME = "export_report.json"
#: A Keras detection and its best same-class TFLite detection count as the same object above this IoU.
MATCH_IOU = 0.5


def best_matches(ref: Detections, other: Detections) -> tuple[np.ndarray, np.ndarray]:
    """For each ``ref`` detection: index of the same-class ``other`` detection with the highest IoU
    (-1 if none) and that IoU."""
    idx = np.full(len(ref), -1, np.int64)
    best = np.zeros(len(ref), np.float64)
    if len(ref) and len(other):
        iou = iou_matrix(ref.boxes, other.boxes)
        iou[ref.labels[:, None] != other.labels[None, :]] = -1.0
        idx = iou.argmax(axis=1)
        best = iou[np.arange(len(ref)), idx]
        idx[best < 0] = -1
        best = np.maximum(best, 0.0)
    return idx, best


def detection_agreement(
    ref: Sequence[Detections], other: Sequence[Detections], min_score: float = 0.5, min_iou: float = 0.9
) -> dict:
    """Share of confident ``ref`` detections (score >= min_score) that ``other`` reproduces: a detection
    of the same class with IoU > min_iou."""
    ious = []
    for r, o in zip(ref, other, strict=True):
        _, best = best_matches(r.select(r.scores >= min_score), o)
        ious.extend(best.tolist())
    ious = np.asarray(ious)
    agreed = int((ious > min_iou).sum())
    return {
        "confident": len(ious),
        "agreed": agreed,
        "agreement": agreed / len(ious) if len(ious) else 1.0,
        "worst_iou": float(ious.min()) if len(ious) else None,
        "min_score": min_score,
        "min_iou": min_iou,
    }


def centre_class_logits(raw: np.ndarray, num_anchors: int, num_classes: int) -> np.ndarray:
    """Subtract each anchor's mean class logit (softmax-invariant), as the int8 head's weights do."""
    out = np.array(raw, np.float32, copy=True)
    n = num_anchors * num_classes
    logits = out[..., :n].reshape(*out.shape[:-1], num_anchors, num_classes)
    out[..., :n] = (logits - logits.mean(axis=-1, keepdims=True)).reshape(*out.shape[:-1], n)
    return out


def int8_reference(raw: np.ndarray, num_anchors: int, num_classes: int, ranges) -> np.ndarray:
    """Keras output as the int8 head represents it: class logits centred, every channel clipped to its
    exported range. Decoding it gives the same detections as ``raw``."""
    ranges = np.asarray(ranges, np.float32)
    return np.clip(centre_class_logits(raw, num_anchors, num_classes), -ranges, ranges)


def compare_keras_model(model, model_path, images: Sequence[np.ndarray], cfg, num_threads: int | None = None,
                        backend: str = "auto") -> dict:
    """Run uint8 RGB frames (any size) through ``model`` and the exported file; max raw deviation and the
    largest box (pixels) / score deviation between Keras detections and their matches in the export
    (same class, IoU >= MATCH_IOU; the others are counted as unmatched)."""
    import keras

    from squeezedet.backends import BackendOptions, load_backend

    meta = read_metadata(model_path)
    exported = load_backend(model_path, backend, BackendOptions(num_threads=num_threads), meta=meta)
    w, h = cfg.model.input_size
    num_classes, num_anchors = len(cfg.model.classes), cfg.model.num_anchors
    anchors = cfg.model.anchors()
    ranges = meta.extra.get("output_ranges")
    pp = cfg.postprocess

    def decode(raw, size):
        return postprocess(raw, anchors, num_classes, (w, h), size, pp.score_threshold, pp.nms_threshold,
                           pp.top_k, pp.max_detections)

    raw_dev, raw_mean, raw_peak, box_dev, score_dev, ious = [], [], [], [0.0], [0.0], []
    keras_dets, exported_dets = [], []
    for frame in images:
        x = resize_for_model(frame, (w, h))[None]
        ref = keras.ops.convert_to_numpy(model(x, training=False))[0]
        got = exported(x)[0]
        if ranges is not None:
            ref = int8_reference(ref, num_anchors, num_classes, ranges)
        diff = np.abs(ref - got)
        raw_dev.append(float(diff.max()))
        raw_mean.append(float(diff.mean()))
        raw_peak.append(float(np.abs(ref).max()))
        size = (frame.shape[1], frame.shape[0])
        a, b = decode(ref, size), decode(got, size)
        keras_dets.append(a)
        exported_dets.append(b)
        idx, best = best_matches(a, b)
        hit = best >= MATCH_IOU
        ious.extend(best.tolist())
        if hit.any():
            box_dev.append(float(np.abs(a.boxes[hit] - b.boxes[idx[hit]]).max()))
            score_dev.append(float(np.abs(a.scores[hit] - b.scores[idx[hit]]).max()))
    report = {
        "model": Path(model_path).name,
        "format": meta.model_format,
        "backend": exported.describe(),
        "quantization": meta.quantization,
        "num_images": len(images),
        "raw_max_abs_dev": max(raw_dev, default=0.0),
        "raw_mean_abs_dev": float(np.mean(raw_mean)) if raw_mean else 0.0,
        "raw_max_abs": max(raw_peak, default=0.0),
        "raw_reference": "keras" if ranges is None else "keras, class logits centred, clipped to output_ranges",
        "detections_keras": sum(len(d) for d in keras_dets),
        "detections_exported": sum(len(d) for d in exported_dets),
        "unmatched": int(sum(i < MATCH_IOU for i in ious)),
        "worst_best_iou": float(min(ious)) if ious else None,
        "box_max_dev_px": max(box_dev),
        "score_max_dev": max(score_dev),
        "agreement": detection_agreement(keras_dets, exported_dets),
    }
    log.info(
        "%s vs Keras on %d images: raw max |dev| %.3g (max |raw| %.3g), detections %d/%d, unmatched %d, "
        "box max dev %.2f px, score max dev %.3f",
        report["model"], len(images), report["raw_max_abs_dev"], report["raw_max_abs"], report["detections_exported"],
        report["detections_keras"], report["unmatched"], report["box_max_dev_px"], report["score_max_dev"],
    )
    return report


#: The first exported format's name for the same check.
compare_keras_tflite = compare_keras_model


def write_report(model_path, report: dict) -> Path:
    """Add (or replace) this model's entry in ``export_report.json`` beside it, atomically."""
    path = Path(model_path).parent / REPORT_NAME
    entries = {}
    if path.is_file():
        try:
            entries = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s: unreadable, replacing it", path)
        if not isinstance(entries, dict):
            entries = {}
    entries[Path(model_path).name] = report
    return atomic_write_json(path, entries)
