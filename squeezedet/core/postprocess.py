"""Raw ConvDet tensor -> detections. One implementation serves Keras, TFLite and the edge daemon.

Channel layout of the ConvDet output (as in the original SqueezeDet), for A anchors and C classes:
``[0, A*C)`` class logits, ``[A*C, A*C+A)`` confidence logits, ``[A*C+A, A*(C+5))`` box deltas.
Score = softmax class probability x sigmoid confidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from squeezedet.core.boxes import clip_xyxy, cxcywh_to_xyxy, decode_deltas
from squeezedet.core.geometry import DecodeDefaults
from squeezedet.core.nms import per_class_nms, top_k

#: The decode defaults every consumer shares (a model's sidecar overrides them).
DECODE = DecodeDefaults()


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


def confidence_floor(score_threshold: float) -> float:
    """A confidence logit below which no anchor can reach ``score_threshold``.

    score = max softmax probability (<= 1) x sigmoid(confidence), so score >= t needs
    sigmoid(confidence) >= t, i.e. confidence >= logit(t). The floor sits a little under logit(t) so
    float32 rounding of the sigmoid can never drop an anchor the exact test below would keep."""
    t = float(score_threshold)
    if t <= 0.0:
        return -np.inf
    t = min(t, 1.0 - 1e-7)
    logit = float(np.log(t / (1.0 - t)))
    return logit - 0.01 - 1e-3 * abs(logit)


def postprocess(
    raw,
    anchors,
    num_classes: int,
    input_size: tuple[int, int],
    image_size: tuple[int, int] | None = None,
    score_threshold: float = DECODE.score_threshold,
    nms_threshold: float = DECODE.nms_threshold,
    top_k_before_nms: int = DECODE.top_k,
    max_detections: int = DECODE.max_detections,
) -> Detections:
    """Decode one image's raw ConvDet output.

    input_size / image_size are (width, height); boxes are returned in image_size pixels (the model saw
    the full frame resized to input_size, so the mapping is a plain per-axis scale).

    Cheap first: anchors whose confidence alone cannot reach the threshold are dropped before any
    softmax, so the exact score (softmax x sigmoid, computed as before) runs on a few hundred anchors
    instead of all of them (16,848 at 1248x384); the rest is vectorised over the survivors. Same
    detections as scoring every anchor, then top-k, then the threshold.
    """
    anchors = np.asarray(anchors, dtype=np.float32)
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim == 4:
        if raw.shape[0] != 1:
            raise ValueError(f"expected a single image, got batch of {raw.shape[0]}")
        raw = raw[0]
    gh, gw, ch = raw.shape
    num_anchors = ch // (num_classes + 5)
    if ch != num_anchors * (num_classes + 5):
        split_convdet_output(raw, num_anchors, num_classes)  # raises the channel-count error
    total = gh * gw * num_anchors
    if len(anchors) != total:
        raise ValueError(f"{len(anchors)} anchors do not match {total} ConvDet predictions")
    cells = raw.reshape(gh * gw, ch)  # a view: no copy of the tensor
    n_cls = num_anchors * num_classes
    conf_all = cells[:, n_cls : n_cls + num_anchors]  # [cells, A]; flat index = anchor index
    cand = np.flatnonzero(conf_all >= confidence_floor(score_threshold))
    cell, a = np.divmod(cand, num_anchors)
    cls_logits = cells[cell[:, None], (a * num_classes)[:, None] + np.arange(num_classes)]
    probs = softmax(cls_logits) * sigmoid(conf_all[cell, a])[:, None]
    labels = probs.argmax(axis=1)
    scores = probs.max(axis=1)
    passed = scores >= score_threshold
    cand, cell, a, labels, scores = cand[passed], cell[passed], a[passed], labels[passed], scores[passed]
    order = top_k(scores, top_k_before_nms)
    cand, cell, a, labels, scores = cand[order], cell[order], a[order], labels[order], scores[order]
    deltas = cells[cell[:, None], (n_cls + num_anchors + 4 * a)[:, None] + np.arange(4)]
    in_w, in_h = input_size
    out_w, out_h = image_size if image_size is not None else input_size
    boxes = cxcywh_to_xyxy(decode_deltas(deltas, anchors[cand]))
    # scale to the image first, then clip to its last pixel (clipping at input resolution would cut
    # frame-edge boxes short by up to one input pixel's worth of frame)
    boxes = clip_xyxy(boxes * np.array([out_w / in_w, out_h / in_h] * 2, dtype=np.float32), out_w, out_h)
    keep = per_class_nms(boxes, scores, labels, nms_threshold)[:max_detections]
    return Detections(boxes[keep].astype(np.float32), scores[keep].astype(np.float32),
                      labels[keep].astype(np.int64))
