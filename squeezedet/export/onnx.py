"""Keras export graph -> ONNX (fp32, or int8 with static QDQ quantization) for ONNX Runtime and TensorRT.

Route (measured with TensorFlow 2.21 / Keras 3.15, tf2onnx 1.17, see docs/export.md): the export graph
as a ``tf.function`` with a fixed ``[1, H, W, 3]`` uint8 signature, frozen to constants, then tf2onnx's
``convert.from_graph_def``. Freezing matters: ``convert.from_function`` turns the int8 head's captured
range constant into a second graph input. Keras' own ``model.export(format="onnx")`` goes through
tf2onnx as well but leaves the batch dimension free; a fixed shape lets every engine plan once.

int8 is onnxruntime's static quantization in QDQ form: weights per output channel, activations per
tensor, both uint8 (u8u8), ranges from min/max over real calibration images preprocessed exactly as at
inference. Not u8s8: on x86 CPUs without VNNI (AVX2, e.g. this project's Zen 3 test machine) onnxruntime
runs u8s8 with a saturating 16-bit multiply-add and the tiny test model's confidence logits came out up
to 8.4 off (u8u8: 0.68; TFLite int8: 0.87), for 9 % more time. The per-channel rescale of the head (the
graph's only Mul, see squeezedet.export.graph) stays float, as it does in the TFLite export.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from squeezedet.core.preprocess import read_image_rgb, resize_for_model

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "raw_convdet"


def to_onnx(graph, opset: int = OPSET):
    """ONNX ModelProto of a Keras export graph (fixed input shape, uint8 ``image`` -> ``raw_convdet``)."""
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec(tuple(graph.inputs[0].shape), tf.uint8, name=INPUT_NAME)
    frozen = convert_variables_to_constants_v2(
        tf.function(lambda image: graph(image, training=False)).get_concrete_function(spec))
    inp, out = frozen.inputs[0].name, frozen.outputs[0].name
    proto, _ = tf2onnx.convert.from_graph_def(frozen.graph.as_graph_def(), input_names=[inp], output_names=[out],
                                              opset=opset)
    rename(proto, {inp: INPUT_NAME, out: OUTPUT_NAME})
    min_max_to_clip(proto)
    return proto


def min_max_to_clip(proto) -> int:
    """Rewrite ``Max(Min(x, hi), lo)`` with scalar constants (how tf2onnx spells ``clip_by_value``) as
    ``Clip(x, lo, hi)``; returns how many. Quantizers fold a Clip after a Conv into the conv's output
    range, so the int8 head is quantized over [-1, 1] as in TFLite; a Min/Max pair would leave the conv
    quantized over its unclipped range (18x coarser for this head)."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = proto.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    users: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)

    def scalar(name):
        value = consts.get(name)
        return value if value is not None and value.size == 1 else None

    done = 0
    for node in list(graph.node):
        if node.op_type != "Min" or len(node.input) != 2 or scalar(node.input[1]) is None:
            continue
        after = users.get(node.output[0], [])
        if len(after) != 1 or after[0].op_type != "Max" or len(after[0].input) != 2:
            continue
        top = after[0]
        lo_name = top.input[1] if top.input[0] == node.output[0] else top.input[0]
        if scalar(lo_name) is None:
            continue
        lo, hi = (np.asarray(scalar(n), np.float32).reshape(()) for n in (lo_name, node.input[1]))
        lo_t, hi_t = f"{top.name}/clip_min", f"{top.name}/clip_max"
        graph.initializer.extend([numpy_helper.from_array(lo, lo_t), numpy_helper.from_array(hi, hi_t)])
        clip = helper.make_node("Clip", [node.input[0], lo_t, hi_t], [top.output[0]], name=f"{top.name}/clip")
        index = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.remove(top)
        graph.node.insert(index, clip)
        done += 1
    return done


def rename(proto, names: dict) -> None:
    """Rename graph inputs/outputs (TensorFlow's ``image:0`` -> ``image``) everywhere they are used."""
    for value in (*proto.graph.input, *proto.graph.output):
        value.name = names.get(value.name, value.name)
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = names.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = names.get(name, name)


class _Frames:
    """onnxruntime CalibrationDataReader over image files, read and resized one at a time."""

    def __init__(self, paths, input_size):
        self.paths, self.input_size = list(paths), input_size
        self.rewind()

    def rewind(self):
        self._it = iter(self.paths)

    def get_next(self):
        path = next(self._it, None)
        if path is None:
            return None
        return {INPUT_NAME: resize_for_model(read_image_rgb(path), self.input_size)[None]}


def quantize_int8(fp32_path: Path, out_path: Path, calib_paths, input_size) -> None:
    """Static QDQ int8 of an fp32 ONNX file, calibrated on ``calib_paths``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_Frames, CalibrationDataReader):
        pass

    pre = fp32_path.with_name(fp32_path.stem + "_pre.onnx")
    quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
    keep_float = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Mul"]
    quantize_static(
        str(pre), str(out_path), Reader(calib_paths, input_size),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep_float,
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
    )


def write_onnx(graph, output: Path, quantize: str, calib_paths, input_size) -> None:
    """Write ``output`` (.onnx) atomically: fp32 straight from tf2onnx, int8 quantized from it."""
    import onnx

    output = Path(output)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".onnx_export_") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        onnx.save(to_onnx(graph), str(fp32))
        final = fp32
        if quantize == "int8":
            log.info("quantizing to int8 (static QDQ, per-channel weights) on %d images", len(calib_paths))
            final = Path(tmp) / "int8.onnx"
            quantize_int8(fp32, final, calib_paths, input_size)
        os.replace(final, output)
