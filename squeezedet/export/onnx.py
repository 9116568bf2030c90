"""Keras export graph -> ONNX (fp32, or int8 with static QDQ quantization) for ONNX Runtime and TensorRT.

Route (measured with TensorFlow 2.21 / Keras 3.15, tf2onnx 1.17, see docs/export.md): the export graph
as a ``tf.function`` with a fixed ``[1, H, W, 3]`` uint8 signature, frozen to constants, then tf2onnx's
``convert.from_graph_def``. Freezing matters: ``convert.from_function`` turns the int8 head's captured
range constant into a second graph input. Keras' own ``model.export(format="onnx")`` goes through
tf2onnx as well but leaves the batch dimension free; a fixed shape lets every engine plan once.

int8 is onnxruntime's static quantization in QDQ form, its recommended layout: int8 weights symmetric
per output channel, uint8 activations per tensor, ranges from min/max over real calibration images
preprocessed exactly as at inference. ONNX Runtime runs that on its int8 dot-product kernels (VNNI, ARM
dot product): on an AVX-512 VNNI Xeon 2.3x faster than the uint8 weights of earlier exports, while int8
activations were 3.3x slower again (docs/backends.md). x86 CPUs without VNNI would saturate u8 x s8
pair sums; there the back end turns on onnxruntime's exact u8u8 path (squeezedet.backends.onnxruntime).
Three rewrites cut another 31 % (the first and last exact): conv1 reads 4 channels instead of 3 (:func:`widen_thin_convs`),
Concat inputs share the output's scale (:func:`share_concat_scales`) and the uint8 image feeds the first
quantized conv without a Cast and an identity Quantize (:func:`drop_identity_quantize`). The per-channel
rescale of the head (the graph's only Mul, see squeezedet.export.graph) stays float, as it does in the
TFLite export.
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
    users = _consumers(graph)

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


def _initializers(graph) -> dict:
    return {i.name: i for i in graph.initializer}


def _producers(graph) -> dict:
    return {out: node for node in graph.node for out in node.output}


def _consumers(graph) -> dict[str, list]:
    users: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def widen_thin_convs(proto, multiple: int = 4) -> int:
    """Pad the input channels of a Conv fed only by another Conv to a multiple of ``multiple``: zero
    filters on the producer, zero weights on the consumer, so every output is unchanged. ONNX Runtime's
    int8 convolution kernel (MLAS ConvSym) takes input channels in fours; SqueezeDet's conv1 reads the
    3-channel normalisation conv and ran 4-5x slower through the fallback. Returns how many."""
    import numpy as np
    from onnx import numpy_helper

    graph = proto.graph
    inits, users = _initializers(graph), _consumers(graph)
    producer = _producers(graph)

    def own_constant(name):  # an initializer nothing else reads, safe to resize
        return name in inits and len(users.get(name, [])) == 1

    done = 0
    for conv in graph.node:
        src = producer.get(conv.input[0]) if conv.op_type == "Conv" else None
        if src is None or src.op_type != "Conv" or len(users[conv.input[0]]) != 1:
            continue
        if any(a.name == "group" and a.i != 1 for a in (*conv.attribute, *src.attribute)):
            continue
        params = [conv.input[1], *src.input[1:3]]
        if not all(own_constant(n) for n in params):
            continue
        weight = numpy_helper.to_array(inits[conv.input[1]])
        extra = -weight.shape[1] % multiple
        if not extra:
            continue
        pads = {conv.input[1]: 1, src.input[1]: 0}
        if len(src.input) > 2:
            pads[src.input[2]] = 0
        for name, axis in pads.items():
            value = numpy_helper.to_array(inits[name])
            widths = [(0, extra if a == axis else 0) for a in range(value.ndim)]
            inits[name].CopyFrom(numpy_helper.from_array(np.pad(value, widths), name))
        stale = [v for v in graph.value_info if v.name == src.output[0]]
        for v in stale:
            graph.value_info.remove(v)
        done += 1
    return done


def share_concat_scales(proto) -> int:
    """In a QDQ graph, quantize every Concat input with the scale and zero point of the Concat's output
    (TFLite's int8 rule). The output's range spans every input's, so nothing clips; ONNX Runtime's
    QLinearConcat then copies bytes instead of requantizing each input. Returns the inputs changed."""
    graph = proto.graph
    users = _consumers(graph)
    producer = _producers(graph)
    done = 0
    for concat in graph.node:
        after = users.get(concat.output[0], []) if concat.op_type == "Concat" else []
        if len(after) != 1 or after[0].op_type != "QuantizeLinear" or len(after[0].input) < 3:
            continue
        scale, zero = after[0].input[1:3]
        for name in concat.input:
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is None or q.op_type != "QuantizeLinear" or len(users[q.output[0]]) != 1:
                continue
            for node in (q, dq):
                node.input[1], node.input[2] = scale, zero
            done += 1
    return done


def drop_identity_quantize(proto) -> int:
    """Feed the uint8 image straight to the int8 graph: ``Cast(uint8 -> float)``, any Transposes, then
    ``QuantizeLinear`` with scale 1 and zero point 0 is the identity on uint8 (the calibrated range of
    pixels is [0, 255]), so the Transposes run on the uint8 tensor and the Cast and the Quantize go,
    two full-frame passes fewer. Returns how many."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    graph = proto.graph
    inits, users = _initializers(graph), _consumers(graph)
    uint8_inputs = {i.name for i in graph.input if i.type.tensor_type.elem_type == TensorProto.UINT8}
    done = 0
    for cast in list(graph.node):
        if cast.op_type != "Cast" or cast.input[0] not in uint8_inputs:
            continue
        chain, tensor = [], cast.output[0]
        while len(users.get(tensor, [])) == 1 and users[tensor][0].op_type == "Transpose":
            chain.append(users[tensor][0])
            tensor = chain[-1].output[0]
        after = users.get(tensor, [])
        if len(after) != 1 or after[0].op_type != "QuantizeLinear" or len(after[0].input) < 3:
            continue
        quant = after[0]
        scale, zero = (numpy_helper.to_array(inits[n]) if n in inits else None for n in quant.input[1:3])
        if scale is None or zero is None or zero.dtype != np.uint8 or scale.size != 1 or zero.size != 1 \
                or float(scale) != 1.0 or int(zero) != 0:
            continue
        source = cast.input[0]
        for node in chain:
            node.input[0] = source
            source = node.output[0]
        for node in users[quant.output[0]]:
            node.input[:] = [source if i == quant.output[0] else i for i in node.input]
        graph.node.remove(cast)
        graph.node.remove(quant)
        stale = {n.output[0] for n in chain}
        for v in [v for v in graph.value_info if v.name in stale]:
            graph.value_info.remove(v)
        done += 1
    return done


def quantize_int8(fp32_path: Path, out_path: Path, calib_paths, input_size) -> None:
    """Static QDQ int8 of an fp32 ONNX file, calibrated on ``calib_paths``: s8 weights per channel,
    u8 activations (module docstring)."""
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

    wide = fp32_path.with_name(fp32_path.stem + "_wide.onnx")
    proto = onnx.load(str(fp32_path))
    log.debug("widened %d convolutions to 4-channel inputs", widen_thin_convs(proto))
    onnx.save(proto, str(wide))
    pre = fp32_path.with_name(fp32_path.stem + "_pre.onnx")
    quant_pre_process(str(wide), str(pre), skip_symbolic_shape=True)
    keep_float = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Mul"]
    quantize_static(
        str(pre), str(out_path), Reader(calib_paths, input_size),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep_float,
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
    )
    quantized = onnx.load(str(out_path))
    log.debug("%d concatenated tensors share their output's scale", share_concat_scales(quantized))
    log.debug("%d identity quantizations of the uint8 image dropped", drop_identity_quantize(quantized))
    used = {name for node in quantized.graph.node for name in node.input}
    for init in [i for i in quantized.graph.initializer if i.name not in used]:
        quantized.graph.initializer.remove(init)
    onnx.save(quantized, str(out_path))


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
