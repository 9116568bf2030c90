"""Learning rate: linear warm-up, then cosine or step decay (a serialisable Keras schedule)."""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="squeezedet")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step): linear 0 -> base over ``warmup_steps``, then ``decay`` over ``total_steps``."""

    def __init__(self, base_lr, warmup_steps, total_steps, decay="cosine", decay_steps=10000, decay_factor=0.5):
        self.base_lr = float(base_lr)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), 1)
        self.decay = decay
        self.decay_steps = int(decay_steps)
        self.decay_factor = float(decay_factor)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = float(max(self.warmup_steps, 1))
        warmup_lr = self.base_lr * ops.minimum((step + 1.0) / warm, 1.0)
        after = ops.maximum(step - self.warmup_steps, 0.0)
        if self.decay == "cosine":
            span = float(max(self.total_steps - self.warmup_steps, 1))
            frac = ops.minimum(after / span, 1.0)
            decayed = self.base_lr * (0.01 + 0.99 * 0.5 * (1.0 + ops.cos(math.pi * frac)))
        elif self.decay == "step":
            decayed = self.base_lr * ops.power(self.decay_factor, ops.floor(after / float(self.decay_steps)))
        else:
            decayed = ops.convert_to_tensor(self.base_lr, "float32") + 0.0 * step
        return ops.where(step < self.warmup_steps, warmup_lr, decayed)

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "decay": self.decay,
            "decay_steps": self.decay_steps,
            "decay_factor": self.decay_factor,
        }
