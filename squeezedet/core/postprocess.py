"""Raw ConvDet tensor -> detections. One implementation serves Keras, TFLite and the edge daemon.

Channel layout of the ConvDet output (as in the original SqueezeDet), for A anchors and C classes:
``[0, A*C)`` class logits, ``[A*C, A*C+A)`` confidence logits, ``[A*C+A, A*(C+5))`` box deltas.
Score = softmax class probability x sigmoid confidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from squeezedet.core.boxes import clip_xyxy, cxcywh_to_xyxy, decode_deltas
from squeezedet.core.nms import per_class_nms, top_k


@dataclass
class Detections:
    """Detections of one image: xyxy boxes in image pixels, scores in [0, 1], integer class labels."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, idx) -> "Detections":
        return Detections(self.boxes[idx], self.scores[idx], self.labels[idx])


def sigmoid(x):
    x = np.asarray(x, dtype=np.float32)
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))).astype(np.float32)


def softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


def split_convdet_output(raw, num_anchors: int, num_classes: int):
    """Split a raw [gh, gw, A*(C+5)] (or batched [1, ...]) tensor into per-anchor
    (class_logits [N, C], conf_logits [N], deltas [N, 4]) with N = gh*gw*A."""
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim == 4:
        if raw.shape[0] != 1:
            raise ValueError(f"expected a single image, got batch of {raw.shape[0]}")
        raw = raw[0]
    gh, gw, ch = raw.shape
    expected = num_anchors * (num_classes + 5)
    if ch != expected:
        raise ValueError(
            f"ConvDet output has {ch} channels, expected {expected} = {num_anchors} anchors x ({num_classes} classes + 5)"
        )
    n_cls = num_anchors * num_classes
    cls = raw[..., :n_cls].reshape(gh * gw * num_anchors, num_classes)
    conf = raw[..., n_cls : n_cls + num_anchors].reshape(gh * gw * num_anchors)
    deltas = raw[..., n_cls + num_anchors :].reshape(gh * gw * num_anchors, 4)
    return cls, conf, deltas


def postprocess(
    raw,
    anchors,
    num_classes: int,
    input_size: tuple[int, int],
    image_size: tuple[int, int] | None = None,
    score_threshold: float = 0.3,
    nms_threshold: float = 0.4,
    top_k_before_nms: int = 64,
    max_detections: int = 100,
) -> Detections:
    """Decode one image's raw ConvDet output.

    input_size / image_size are (width, height); boxes are returned in image_size pixels (the model saw
    the full frame resized to input_size, so the mapping is a plain per-axis scale).
    """
    anchors = np.asarray(anchors, dtype=np.float32)
    raw = np.asarray(raw, dtype=np.float32)
    ch = raw.shape[-1]
    num_anchors = ch // (num_classes + 5)
    cls_logits, conf_logits, deltas = split_convdet_output(raw, num_anchors, num_classes)
    if len(anchors) != len(conf_logits):
        raise ValueError(f"{len(anchors)} anchors do not match {len(conf_logits)} ConvDet predictions")
    probs = softmax(cls_logits) * sigmoid(conf_logits)[:, None]
    labels = probs.argmax(axis=1)
    scores = probs.max(axis=1)
    idx = top_k(scores, top_k_before_nms)
    idx = idx[scores[idx] >= score_threshold]
    in_w, in_h = input_size
    out_w, out_h = image_size if image_size is not None else input_size
    boxes = cxcywh_to_xyxy(decode_deltas(deltas[idx], anchors[idx]))
    # scale to the image first, then clip to its last pixel (clipping at input resolution would cut
    # frame-edge boxes short by up to one input pixel's worth of frame)
    boxes = clip_xyxy(boxes * np.array([out_w / in_w, out_h / in_h] * 2, dtype=np.float32), out_w, out_h)
    keep = per_class_nms(boxes, scores[idx], labels[idx], nms_threshold)[:max_detections]
    boxes, scores_k, labels_k = boxes[keep], scores[idx][keep], labels[idx][keep]
    return Detections(boxes.astype(np.float32), scores_k.astype(np.float32), labels_k.astype(np.int64))
