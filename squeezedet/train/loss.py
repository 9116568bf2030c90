"""SqueezeDet loss (paper / original code), numerically safe on images without objects.

Three terms over the dense target rows of squeezedet.data.targets:
class cross-entropy on positive anchors; confidence regressed towards the IoU of each positive
anchor's decoded box with its GT (no gradient through the IoU) and towards 0 elsewhere, with separate
positive/negative weights; L2 on the box deltas of positive anchors. Normalised by the number of
objects in the batch (at least 1), so an empty batch gives a finite loss.

Under tf.distribute each replica holds part of the global batch. The normalisers (object count, batch
size) are then summed over replicas, and each replica returns its *share* of the global-batch loss:
the shares add up to exactly the loss one device computes on the whole batch, and so do the summed
gradients. N GPUs at global batch B therefore train like one GPU at batch B (a test checks the update),
instead of each replica normalising by its own few objects. Logged values are the global-batch loss
(see ``replicas_in_sync`` and its users).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from squeezedet.core.boxes import EXP_THRESH

#: The original's epsilon inside -log(p + eps) and -log(1 - p + eps): it caps a term at -log(1e-16) = 36.8.
EPSILON = 1e-16
LOG_EPSILON = float(np.log(EPSILON))


def replicas_in_sync() -> int:
    """Replicas of the current tf.distribute strategy (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def multi_replica_context():
    """The replica context of a step that runs on several replicas, else None (one device, or outside
    a replica function)."""
    ctx = tf.distribute.get_replica_context()
    return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


def global_sums(*values):
    """``values`` summed over the replicas when called inside a multi-replica step, else as they are."""
    ctx = multi_replica_context()
    if ctx is None:
        return values
    return tuple(ctx.all_reduce(tf.distribute.ReduceOp.SUM, list(values)))


def split_raw(y_pred, num_anchors: int, num_classes: int):
    """Raw ConvDet [B, gh, gw, A*(C+5)] -> class logits [B,N,C], conf logits [B,N], deltas [B,N,4]."""
    y_pred = tf.cast(y_pred, tf.float32)
    b = tf.shape(y_pred)[0]
    n_cls = num_anchors * num_classes
    cls = tf.reshape(y_pred[..., :n_cls], [b, -1, num_classes])
    conf = tf.reshape(y_pred[..., n_cls : n_cls + num_anchors], [b, -1])
    deltas = tf.reshape(y_pred[..., n_cls + num_anchors :], [b, -1, 4])
    return cls, conf, deltas


def log_plus_epsilon(log_x):
    """log(x + EPSILON) from log(x), exactly and without forming x: never -inf, smooth gradient.

    Adding 1e-16 to a float32 probability is a no-op (graph optimisers even fold ``1.0 + 1e-16`` to
    ``1.0``), so the original's guard vanishes exactly when a softmax saturates; in log space it holds."""
    return tf.maximum(log_x, LOG_EPSILON) + tf.math.log1p(tf.exp(-tf.abs(log_x - LOG_EPSILON)))


def class_cross_entropy(logits, onehot):
    """The original's per-class binary cross-entropy of the softmax,
    ``onehot * -log(p + eps) + (1 - onehot) * -log(1 - p + eps)``, computed from log-softmax.

    ``1 - p_i`` is the sum of the other classes' probabilities, so ``log(1 - p_i)`` is the log-sum-exp
    of their log-probabilities: no cancellation when p_i rounds to 1.0 (oneDNN and Eigen softmaxes do
    for logit gaps from about 17), hence no log(0) and no 0 x inf in the loss or its gradient. The value
    equals the original's wherever its float arithmetic is exact."""
    num_classes = int(logits.shape[-1])
    lse = tf.reduce_logsumexp(logits, axis=-1, keepdims=True)
    log_p = logits - lse
    # For every class but the top one the others include the top class, so their sum of exp(z - max) is
    # at least 1 and subtracting one term from the total loses nothing (O(C) memory, not C x C).
    top = tf.one_hot(tf.argmax(logits, axis=-1), num_classes, on_value=True, off_value=False)
    peak = tf.reduce_max(logits, axis=-1, keepdims=True)
    e = tf.exp(logits - peak)
    log_others_not_top = tf.math.log(tf.maximum(tf.reduce_sum(e, axis=-1, keepdims=True) - e, 1.0)) + peak
    # For the top class, the log-sum-exp of the rest directly; with one class there is no rest, and a very
    # negative finite stand-in for log(0) keeps the term and its gradient at 0.
    log_rest = tf.reduce_logsumexp(tf.where(top, tf.constant(-1e30, logits.dtype), logits), axis=-1, keepdims=True)
    log_1m_p = tf.where(top, log_rest, log_others_not_top) - lse
    return onehot * -log_plus_epsilon(log_p) + (1.0 - onehot) * -log_plus_epsilon(log_1m_p)


def safe_exp_tf(w, thresh: float = EXP_THRESH):
    slope = float(np.exp(thresh))
    linear = (w - thresh + 1.0) * slope
    return tf.where(w > thresh, linear, tf.exp(tf.minimum(w, thresh)))


def decode_tf(deltas, anchors):
    """TF twin of squeezedet.core.boxes.decode_deltas: -> (cx, cy, w, h)."""
    cx = anchors[:, 0] + deltas[..., 0] * anchors[:, 2]
    cy = anchors[:, 1] + deltas[..., 1] * anchors[:, 3]
    w = anchors[:, 2] * safe_exp_tf(deltas[..., 2])
    h = anchors[:, 3] * safe_exp_tf(deltas[..., 3])
    return tf.stack([cx, cy, w, h], axis=-1)


def predicted_boxes_for_iou(deltas, anchors, image_size=None, inclusive: bool = False):
    """Decoded boxes as the original scored them against the GT: corners clipped to the image
    (its "trimming": 0 .. size - 1) and, under the inclusive box-size convention, the far edge one pixel
    out (its bbox_transform_inv adds 1 to the width, bbox_transform then puts it on x2). -> (cx, cy, w, h)"""
    box = decode_tf(deltas, anchors)
    x1, y1 = box[..., 0] - box[..., 2] / 2, box[..., 1] - box[..., 3] / 2
    x2, y2 = box[..., 0] + box[..., 2] / 2, box[..., 1] + box[..., 3] / 2
    if image_size is not None:  # inclusive: the last pixel is size - 1, its far edge one further
        last = 1.0 if inclusive else 0.0
        w, h = float(image_size[0]) - last, float(image_size[1]) - last
        x1, x2 = tf.clip_by_value(x1, 0.0, w), tf.clip_by_value(x2, 0.0, w)
        y1, y2 = tf.clip_by_value(y1, 0.0, h), tf.clip_by_value(y2, 0.0, h)
    if inclusive:
        x2, y2 = x2 + 1.0, y2 + 1.0
    return tf.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=-1)


def iou_cxcywh_tf(a, b):
    """Element-wise IoU of two (cx, cy, w, h) tensors of the same shape."""
    ax1, ay1 = a[..., 0] - a[..., 2] / 2, a[..., 1] - a[..., 3] / 2
    ax2, ay2 = a[..., 0] + a[..., 2] / 2, a[..., 1] + a[..., 3] / 2
    bx1, by1 = b[..., 0] - b[..., 2] / 2, b[..., 1] - b[..., 3] / 2
    bx2, by2 = b[..., 0] + b[..., 2] / 2, b[..., 1] + b[..., 3] / 2
    iw = tf.maximum(tf.minimum(ax2, bx2) - tf.maximum(ax1, bx1), 0.0)
    ih = tf.maximum(tf.minimum(ay2, by2) - tf.maximum(ay1, by1), 0.0)
    inter = iw * ih
    union = tf.maximum(a[..., 2], 0) * tf.maximum(a[..., 3], 0) + b[..., 2] * b[..., 3] - inter
    return tf.math.divide_no_nan(inter, union)


@keras.saving.register_keras_serializable(package="squeezedet")
class SqueezeDetLoss(keras.losses.Loss):
    """y_true: dense target rows [B, N, 9 + C]; y_pred: raw ConvDet output."""

    def __init__(
        self,
        anchors,
        num_classes: int,
        coef_class: float = 1.0,
        coef_conf_pos: float = 75.0,
        coef_conf_neg: float = 100.0,
        coef_bbox: float = 5.0,
        image_size: tuple[int, int] | None = None,
        box_size: str = "exclusive",
        reference_batch: int | None = None,
        name: str = "squeezedet_loss",
        **kwargs,
    ):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum", **kwargs)
        self.anchors_np = np.asarray(anchors, np.float32)
        self.num_anchors_total = len(self.anchors_np)
        self.num_classes = num_classes
        self.coef_class = coef_class
        self.coef_conf_pos = coef_conf_pos
        self.coef_conf_neg = coef_conf_neg
        self.coef_bbox = coef_bbox
        #: (width, height) of the model input: predicted boxes are clipped to it before their IoU is taken
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self.box_size = box_size  #: data.box_size of the targets; "inclusive" scores boxes as the original
        #: train.loss_reference_batch: the batch size whose 1/batch weight the positive-confidence term keeps
        #: (None: the batch in use, the original's formula exactly)
        self.reference_batch = reference_batch

    def components(self, y_true, y_pred) -> dict:
        """The three loss terms as scalars (this replica's share of them under tf.distribute)."""
        c = self.num_classes
        y_true = tf.cast(y_true, tf.float32)
        anchors = tf.constant(self.anchors_np)
        num_anchors = int(y_pred.shape[-1]) // (c + 5)
        cls_logits, conf_logits, deltas = split_raw(y_pred, num_anchors, c)
        mask = y_true[..., 0]
        target_deltas = y_true[..., 1:5]
        onehot = y_true[..., 5 : 5 + c]
        gt_boxes = y_true[..., 5 + c : 9 + c]
        batch = tf.cast(tf.shape(mask)[0], tf.float32)
        num_obj, batch = global_sums(tf.stop_gradient(tf.reduce_sum(mask)), batch)  # over the global batch
        num_obj = tf.maximum(num_obj, 1.0)
        n_total = float(self.num_anchors_total)

        ce = class_cross_entropy(cls_logits, onehot)
        class_loss = tf.reduce_sum(ce * mask[..., None]) * self.coef_class / num_obj

        conf = tf.sigmoid(conf_logits)
        pred_boxes = predicted_boxes_for_iou(deltas, anchors, self.image_size, self.box_size == "inclusive")
        ious = tf.stop_gradient(iou_cxcywh_tf(pred_boxes, gt_boxes) * mask)
        # The original's normalisers, averaged over the batch: positives by the batch's object count,
        # negatives by the image's other anchors (the original subtracts the whole batch's object count from
        # ANCHORS: the same to 1 % on real grids, and never below 1 on tiny ones). Averaging a per-object
        # mean over the batch again makes the positive term's weight 1 / batch size: with a reference
        # batch it is fixed at the weight the coefficients were tuned with, whatever the batch.
        sq = tf.square(ious - conf)
        pos_batch = batch if self.reference_batch is None else float(self.reference_batch)
        negatives = tf.maximum(n_total - tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
        conf_loss = (
            tf.reduce_sum(sq * mask) * self.coef_conf_pos / (num_obj * pos_batch)
            + tf.reduce_sum(sq * (1.0 - mask) / negatives) * self.coef_conf_neg / batch
        )

        bbox_loss = self.coef_bbox * tf.reduce_sum(tf.square(mask[..., None] * (deltas - target_deltas))) / num_obj
        return {"class_loss": class_loss, "conf_loss": conf_loss, "bbox_loss": bbox_loss}

    def call(self, y_true, y_pred):
        parts = self.components(y_true, y_pred)
        return parts["class_loss"] + parts["conf_loss"] + parts["bbox_loss"]

    def get_config(self):
        return {
            "anchors": self.anchors_np.tolist(),
            "num_classes": self.num_classes,
            "coef_class": self.coef_class,
            "coef_conf_pos": self.coef_conf_pos,
            "coef_conf_neg": self.coef_conf_neg,
            "coef_bbox": self.coef_bbox,
            "image_size": self.image_size,
            "box_size": self.box_size,
            "reference_batch": self.reference_batch,
            "name": self.name,
        }


def loss_from_config(cfg, anchors) -> SqueezeDetLoss:
    t = cfg.train
    return SqueezeDetLoss(
        anchors,
        num_classes=len(cfg.model.classes),
        coef_class=t.loss_coef_class,
        coef_conf_pos=t.loss_coef_conf_pos,
        coef_conf_neg=t.loss_coef_conf_neg,
        coef_bbox=t.loss_coef_bbox,
        image_size=cfg.model.input_size,
        box_size=cfg.data.box_size,
        reference_batch=t.loss_reference_batch,
    )
