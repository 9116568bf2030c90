"""The graph every export format converts: Keras weights -> batch 1, uint8 RGB in, raw ConvDet float32 out.

Shared by the TFLite, ONNX and OpenVINO writers, so all three run the same network. Two rewrites of the
Keras graph make int8 work (measured, see docs/export.md); both are exact in float, so fp32 still
matches Keras:

* ``ImageNormalization`` (cast, RGB->BGR flip, minus means) becomes a 1x1 conv with a permutation
  kernel and the means as bias. As written in Keras, the converter quantized the cast pixels at scale
  1.48 instead of 1, and its int8 REVERSE_V2 got output parameters different from its input's, which
  the kernel does not requantize (pixels off by 81 on average).
* int8 only: the ConvDet head mixes class logits (+-30), confidence logits and box deltas (+-1) in one
  tensor, and one int8 scale for all of them leaves deltas ~0.1 resolution (boxes off by 10 % of
  the anchor). Each output channel is scaled to [-1, 1] inside the conv weights (class logits first
  centred per anchor, which softmax ignores), clipped there (int8 saturation), and scaled back by a
  float multiply after the int8 graph, so each channel keeps its own resolution. Ranges come from the
  calibration images; logits and deltas beyond the caps below change no detection.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from squeezedet.config import ModelConfig
from squeezedet.export.equivalence import centre_class_logits
from squeezedet.model.layers import BGR_MEANS

#: |class logit| (after centring over classes), |confidence logit| and |box delta| beyond which the
#: int8 head saturates: softmax/sigmoid are flat there and a delta of 4 means a box 55x its anchor.
CLASS_LOGIT_CAP = 16.0
CONF_LOGIT_CAP = 10.0
DELTA_CAP = 4.0
#: Smallest per-channel range (an untrained head outputs ~0 everywhere).
MIN_RANGE = 1e-3


def load_inference_model(model_cfg: ModelConfig, weights_path) -> keras.Model:
    """The model as deployed: dropout excluded, weights loaded by layer name."""
    from squeezedet.inference import load_weights
    from squeezedet.model import build_model

    model = build_model(model_cfg, training_dropout=False)
    load_weights(model, weights_path)
    return model


def head_layout(model_cfg: ModelConfig) -> tuple[slice, slice, slice]:
    """Channel slices of class logits, confidence logits and deltas in the ConvDet output."""
    a, c = model_cfg.num_anchors, len(model_cfg.classes)
    return slice(0, a * c), slice(a * c, a * c + a), slice(a * c + a, a * (c + 5))


def centre_class_weights(kernel: np.ndarray, bias: np.ndarray, model_cfg: ModelConfig):
    """Weights of a head whose class logits are centred per anchor (see centre_class_logits)."""
    a, c = model_cfg.num_anchors, len(model_cfg.classes)
    kernel, bias = kernel.copy(), bias.copy()
    k = kernel[..., : a * c].reshape(*kernel.shape[:-1], a, c)
    kernel[..., : a * c] = (k - k.mean(axis=-1, keepdims=True)).reshape(*kernel.shape[:-1], a * c)
    b = bias[: a * c].reshape(a, c)
    bias[: a * c] = (b - b.mean(axis=-1, keepdims=True)).reshape(-1)
    return kernel, bias


def head_ranges(model: keras.Model, frames, model_cfg: ModelConfig) -> np.ndarray:
    """Per-channel max |output| of the class-centred head over calibration frames, capped and floored."""
    cls, conf, delta = head_layout(model_cfg)
    a, c = model_cfg.num_anchors, len(model_cfg.classes)
    peak = np.zeros(a * (c + 5), np.float32)
    for frame in frames:
        out = centre_class_logits(keras.ops.convert_to_numpy(model(frame[None], training=False)), a, c)
        peak = np.maximum(peak, np.abs(out).reshape(-1, peak.size).max(axis=0))
    caps = np.empty_like(peak)
    caps[cls], caps[conf], caps[delta] = CLASS_LOGIT_CAP, CONF_LOGIT_CAP, DELTA_CAP
    return np.clip(peak, MIN_RANGE, caps)


def normalization_conv(name: str = "normalize_rgb_to_bgr") -> layers.Conv2D:
    """``ImageNormalization`` as a 1x1 conv: the BGR swap as a permutation kernel, the means as bias.

    Exact in float; in int8 it keeps the uint8 input at scale 1 (a float SUB after a cast made the
    converter widen the input range to [-124, 255] and a REVERSE_V2 corrupted the pixels)."""
    conv = layers.Conv2D(3, 1, name=name)
    conv.build((None, None, None, 3))
    conv.set_weights([np.eye(3, dtype=np.float32)[::-1].reshape(1, 1, 3, 3), -np.asarray(BGR_MEANS, np.float32)])
    return conv


def export_graph(model: keras.Model, model_cfg: ModelConfig, ranges: np.ndarray | None = None) -> keras.Model:
    """The graph that is converted: batch 1, uint8 in; with ``ranges`` the int8 head (module docstring)."""
    image = keras.Input((model_cfg.input_height, model_cfg.input_width, 3), batch_size=1, dtype="uint8", name="image")
    x = normalization_conv()(keras.ops.cast(image, "float32"))
    body = keras.Model(model.get_layer("conv1").input, model.get_layer("convdet").input, name="backbone")
    features = body(x)
    convdet = model.get_layer("convdet")
    name = f"{model_cfg.architecture}_export"
    if ranges is None:
        return keras.Model(image, convdet(features), name=name)
    kernel, bias = centre_class_weights(*convdet.get_weights(), model_cfg)
    head = layers.Conv2D(kernel.shape[-1], kernel.shape[:2], padding="same", name="convdet_unit_range")
    scaled = head(features)
    head.set_weights([kernel / ranges, bias / ranges])
    # clip = int8 saturation at +-1 (fused into the conv); the multiply is the graph's one float op, which
    # every writer keeps float (the TFLite converter's denylist, ONNX's and NNCF's excluded Mul).
    out = keras.ops.clip(scaled, -1.0, 1.0) * keras.ops.convert_to_tensor(ranges.astype(np.float32))
    return keras.Model(image, out, name=name)
