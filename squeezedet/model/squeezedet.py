"""SqueezeDet and SqueezeDet+ (Wu et al., 2017) as functional Keras models.

Both take uint8 RGB [H, W, 3] and return the raw ConvDet tensor [H/16, W/16, A*(C+5)] (float32 even
under mixed precision); decoding is done by squeezedet.core.postprocess for every runtime.
"""

from __future__ import annotations

import keras
from keras import layers

from squeezedet.config import ModelConfig
from squeezedet.model.layers import ImageNormalization, fire_module

# conv1's filters, then the body: "pool" is a 3x3/2 max-pool, any other name a fire module whose channels
# come from the geometry (squeezedet.core.geometry.FIRE_CHANNELS, or a pruned model's fire_channels).
_SQUEEZEDET = {
    "conv1": 64,
    "body": ["pool", "fire2", "fire3", "pool", "fire4", "fire5", "pool", "fire6", "fire7", "fire8", "fire9",
             "fire10", "fire11"],
}
_SQUEEZEDET_PLUS = {
    "conv1": 96,
    "body": ["pool", "fire2", "fire3", "fire4", "pool", "fire5", "fire6", "fire7", "fire8", "pool", "fire9",
             "fire10", "fire11"],
}
ARCHITECTURES = {"squeezedet": _SQUEEZEDET, "squeezedet_plus": _SQUEEZEDET_PLUS}
#: Fire modules trained from scratch (not in SqueezeNet v1.1): initialised with a smaller scale.
_NEW_LAYERS = ("fire10", "fire11")


def build_model(cfg: ModelConfig, training_dropout: bool = True) -> keras.Model:
    """Build the network described by ``cfg`` (input size, padding, ConvDet kernel, classes, anchors, the
    fire modules' channels)."""
    arch = ARCHITECTURES[cfg.architecture]
    channels = cfg.fire_layout()
    num_outputs = cfg.num_anchors * (len(cfg.classes) + 5)
    inputs = keras.Input(shape=(cfg.input_height, cfg.input_width, 3), dtype="uint8", name="image")
    x = ImageNormalization(name="normalize")(inputs)
    x = layers.Conv2D(arch["conv1"], cfg.conv1_kernel, strides=2, padding=cfg.padding, activation="relu", name="conv1")(x)
    pools = 0
    for block in arch["body"]:
        if block == "pool":
            pools += 1
            x = layers.MaxPooling2D(3, strides=2, padding=cfg.padding, name=f"pool{pools}")(x)
        else:
            squeeze, expand1x1, expand3x3 = channels[block]
            init = keras.initializers.TruncatedNormal(stddev=0.01) if block in _NEW_LAYERS else "glorot_uniform"
            x = fire_module(x, block, squeeze, expand1x1, weight_init=init, expand3x3=expand3x3)
    if training_dropout and cfg.dropout > 0:
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
    outputs = layers.Conv2D(
        num_outputs,
        cfg.convdet_kernel,
        padding="same",
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.0001),
        dtype="float32",
        name="convdet",
    )(x)
    return keras.Model(inputs, outputs, name=cfg.architecture)


def count_params(model: keras.Model) -> int:
    return int(sum(int(w.numpy().size) for w in model.weights))


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of the conv layers (what dominates SqueezeDet's cost)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, oh, ow, _ = layer.output.shape
            total += int(kh * kw * cin * cout * oh * ow)
    return total
