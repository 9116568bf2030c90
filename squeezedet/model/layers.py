"""Building blocks: input normalisation inside the graph, and the SqueezeNet fire module."""

from __future__ import annotations

import keras
from keras import layers

#: ImageNet per-channel means in BGR order, the convention of the Caffe SqueezeNet weights.
BGR_MEANS = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="squeezedet")
class ImageNormalization(layers.Layer):
    """uint8 RGB -> float BGR minus ImageNet means, so exported models take raw camera pixels."""

    def call(self, x):
        x = keras.ops.cast(x, self.compute_dtype)
        x = keras.ops.flip(x, axis=-1)
        return x - keras.ops.convert_to_tensor(BGR_MEANS, dtype=self.compute_dtype)


def fire_module(x, name: str, squeeze: int, expand: int, weight_init="glorot_uniform", expand3x3: int | None = None):
    """squeeze 1x1 -> (expand 1x1 || expand 3x3), all ReLU; layer names match the pretrained file.

    ``expand3x3`` (default ``expand``) differs from ``expand`` only in a channel-pruned model."""
    s = layers.Conv2D(squeeze, 1, activation="relu", kernel_initializer=weight_init, name=f"{name}_squeeze1x1")(x)
    e1 = layers.Conv2D(expand, 1, activation="relu", kernel_initializer=weight_init, name=f"{name}_expand1x1")(s)
    e3 = layers.Conv2D(
        expand3x3 or expand, 3, padding="same", activation="relu", kernel_initializer=weight_init,
        name=f"{name}_expand3x3",
    )(s)
    return layers.Concatenate(axis=-1, name=f"{name}_concat")([e1, e3])
