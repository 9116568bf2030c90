"""An independent forward pass of the original SqueezeDet with raw ``tf.nn`` ops.

Written from the original ``src/nets/squeezeDet.py`` layer list, not from our Keras builder, so comparing
the two checks the builder: layer order, fire concatenation, per-layer padding and the weight assignment.
It runs the same parsed arrays at the same geometry, so it cannot catch a wrong reading of the file or a
wrong --padding/--input-size: that takes the source's own run (a graph, or ``--like`` one). Input: BGR
minus the ImageNet means, float32 [B, H, W, 3], as the original ``imdb`` preprocessing produced.
"""

from __future__ import annotations

import numpy as np

#: fire modules between the pools, as in the original (pool1, fire2-3, pool3, fire4-5, pool5, fire6-11)
_BLOCKS = ("pool", "fire2", "fire3", "pool", "fire4", "fire5", "pool",
           "fire6", "fire7", "fire8", "fire9", "fire10", "fire11")


def reference_forward(params: dict, padding: str, images_bgr: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    pad = padding.upper()

    def conv(x, name, stride=1, conv_pad="SAME", relu=True):
        kernel, bias = params[name]
        y = tf.nn.bias_add(tf.nn.conv2d(x, kernel, strides=stride, padding=conv_pad), bias)
        return tf.nn.relu(y) if relu else y

    x = conv(tf.constant(images_bgr, tf.float32), "conv1", stride=2, conv_pad=pad)
    for block in _BLOCKS:
        if block == "pool":
            x = tf.nn.max_pool2d(x, 3, 2, pad)
        else:
            s = conv(x, f"{block}/squeeze1x1")
            x = tf.concat([conv(s, f"{block}/expand1x1"), conv(s, f"{block}/expand3x3")], axis=3)
    return conv(x, "conv12", relu=False).numpy()
