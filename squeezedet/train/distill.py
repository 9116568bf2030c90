"""Knowledge distillation: train SqueezeDet (student) with a frozen SqueezeDet+ (teacher) beside the labels.

Three teacher terms are added to the ground-truth loss, all on the raw ConvDet tensors (so teacher
and student need the same input size, classes and anchors):

* soft classes: KL(teacher || student) of the class softmax at temperature T, times T^2 (keeps the
  gradient scale independent of T), on every anchor weighted by the teacher's confidence, because
  background anchors carry no class information;
* confidence hint: the student's confidence regressed towards the teacher's (the teacher's
  confidence map also ranks the many anchors the labels call negative);
* box hint: L2 to the teacher's deltas where the teacher is confident (an extra, denser box target).

Only the student is trained, saved and exported; the teacher runs in inference mode, outside the
gradient tape, so its activations are never kept for backprop. Fed images without labels (a dataset of
images alone), the teacher's terms are the whole loss: how ``squeezedet prune`` recovers a pruned model
on unlabeled camera frames.

Like the ground-truth loss, the terms' normalisers are summed over tf.distribute replicas and each
replica returns its share, so several replicas train like one device on the same global batch.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from squeezedet.errors import ConfigError
from squeezedet.train.loss import SqueezeDetLoss, global_sums, replicas_in_sync, split_raw

#: Teacher confidence above which its deltas are used as a box target.
BOX_HINT_MIN_CONF = 0.5


class Distiller(keras.Model):
    """Wraps student and teacher for ``fit``; ``call`` is the student's forward pass."""

    def __init__(self, student: keras.Model, teacher: keras.Model, base_loss: SqueezeDetLoss,
                 temperature: float = 2.0, weight: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        if tuple(teacher.output.shape[1:]) != tuple(student.output.shape[1:]):
            raise ConfigError(
                f"teacher output {tuple(teacher.output.shape[1:])} does not match student output "
                f"{tuple(student.output.shape[1:])}: teacher and student need the same input size, classes and anchors"
            )
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.base_loss = base_loss
        self.temperature = float(temperature)
        self.weight = float(weight)
        self.num_classes = base_loss.num_classes
        self.num_anchors = int(student.output.shape[-1]) // (self.num_classes + 5)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.gt_loss_tracker = keras.metrics.Mean(name="gt_loss")
        self.distill_loss_tracker = keras.metrics.Mean(name="distill_loss")

    @property
    def metrics(self):
        return [self.loss_tracker, self.gt_loss_tracker, self.distill_loss_tracker]

    def call(self, x, training=False):
        return self.student(x, training=training)

    def distillation_terms(self, student_raw, teacher_raw) -> dict:
        """The three teacher terms (scalars; this replica's share under tf.distribute) for one batch."""
        t = self.temperature
        s_cls, s_conf, s_delta = split_raw(student_raw, self.num_anchors, self.num_classes)
        t_cls, t_conf, t_delta = split_raw(teacher_raw, self.num_anchors, self.num_classes)
        t_conf = tf.sigmoid(t_conf)
        teacher_p = tf.nn.softmax(t_cls / t, axis=-1)
        kl = tf.reduce_sum(
            teacher_p * (tf.nn.log_softmax(t_cls / t, axis=-1) - tf.nn.log_softmax(s_cls / t, axis=-1)), axis=-1
        )
        confident = tf.cast(t_conf >= BOX_HINT_MIN_CONF, tf.float32)
        # normalisers over the global batch (the teacher's outputs carry no gradient)
        conf_mass, anchors, n_confident = global_sums(
            tf.reduce_sum(t_conf), tf.cast(tf.size(t_conf), tf.float32), tf.reduce_sum(confident))
        soft_class = t * t * tf.reduce_sum(kl * t_conf) / tf.maximum(conf_mass, 1.0)
        conf_hint = self.base_loss.coef_conf_neg * tf.reduce_sum(tf.square(tf.sigmoid(s_conf) - t_conf)) / anchors
        box_err = tf.reduce_sum(tf.square(s_delta - t_delta), axis=-1)
        box_hint = self.base_loss.coef_bbox * tf.reduce_sum(box_err * confident) / tf.maximum(n_confident, 1.0)
        return {"soft_class": soft_class, "conf_hint": conf_hint, "box_hint": box_hint}

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        teacher_raw = tf.stop_gradient(tf.cast(self.teacher(x, training=False), tf.float32))
        replicas = float(replicas_in_sync())
        with tf.GradientTape() as tape:
            student_raw = tf.cast(self.student(x, training=True), tf.float32)
            # both already this replica's share of the global-batch value; no labels, no ground-truth term
            gt_share = self.base_loss(y, student_raw) if y is not None else tf.constant(0.0)
            distill_share = tf.add_n(list(self.distillation_terms(student_raw, teacher_raw).values()))
            extra = tf.add_n(self.student.losses) if self.student.losses else 0.0
            # replicas' gradients are summed: the per-replica regularisation is divided by their count
            scaled = self.optimizer.scale_loss(gt_share + self.weight * distill_share + extra / replicas)
        variables = self.student.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        gt_loss, distill_loss = gt_share * replicas, distill_share * replicas  # the trackers average replicas
        self.loss_tracker.update_state(gt_loss + self.weight * distill_loss + extra)
        self.gt_loss_tracker.update_state(gt_loss)
        self.distill_loss_tracker.update_state(distill_loss)
        return {m.name: m.result() for m in self.metrics}


def build_distiller(student: keras.Model, teacher: keras.Model, cfg, anchors) -> Distiller:
    """A Distiller with the ground-truth loss and temperature/weight of ``cfg.train``; compile it, then fit."""
    from squeezedet.train.loss import loss_from_config

    return Distiller(
        student,
        teacher,
        loss_from_config(cfg, anchors),
        temperature=cfg.train.distill_temperature,
        weight=cfg.train.distill_weight,
        name="distiller",
    )
