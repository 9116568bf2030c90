"""Export graph -> a .tflite flatbuffer (fp32, fp16 or full-integer int8), compacted, written atomically.

The graph (:mod:`squeezedet.export.graph`) is the same for every format: uint8 RGB [1, H, W, 3] in, the
raw ConvDet tensor [1, gh, gw, A*(C+5)] float32 out, decoded by squeezedet.core.postprocess. int8 keeps
the head's per-channel rescale (the graph's only MUL) in float.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import keras

from squeezedet.core.io import atomic_write_bytes
from squeezedet.export import calibration
from squeezedet.export.flatbuffer import compact_tflite, same_outputs

log = logging.getLogger(__name__)


def convert(graph: keras.Model, quantize: str, representative=None) -> bytes:
    """TFLite flatbuffer of ``graph``; int8 = full-integer, per-channel weights, uint8 input, float output."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(graph)
    if quantize == "fp32":
        return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "fp16":
        converter.target_spec.supported_types = [tf.float16]
        return converter.convert()
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # The graph's input is uint8 already (the cast is its first op), so no inference_input_type.
    # Selective quantization: everything int8 except the per-channel rescale (the graph's only MUL).
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=["MUL"])
    with warnings.catch_warnings():
        # Noise from the debugger's internals: it builds a tf.lite.Interpreter, and the uint8 input
        # carries no float statistics because the graph casts it itself.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        warnings.filterwarnings("ignore", message=".*Statistics for quantized inputs.*")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative, debug_options=options
        )
        return debugger.get_nondebug_quantized_model()


def compacted(flatbuffer: bytes) -> bytes:
    """``compact_tflite(flatbuffer)`` if the interpreter gives it bit-identical outputs, else the original
    (a schema newer than the one in this Python environment could lose a field in the rewrite)."""
    try:
        small = compact_tflite(flatbuffer)
        if same_outputs(flatbuffer, small):
            log.info("compacted the flatbuffer: %d -> %d bytes, outputs bit-identical", len(flatbuffer), len(small))
            return small
        log.warning("compacted flatbuffer computes differently; keeping the converter's file")
    except Exception as exc:  # noqa: BLE001 - compaction is an optimisation, never a reason to fail
        log.warning("could not compact the flatbuffer (%s); keeping the converter's file", exc)
    return flatbuffer


def write_tflite(graph: keras.Model, output: Path, quantize: str, calib_paths, input_size) -> None:
    """Convert ``graph`` and write the (compacted) flatbuffer to ``output`` atomically."""
    representative = calibration.representative_dataset(calib_paths, input_size) if quantize == "int8" else None
    flatbuffer = compacted(convert(graph, quantize, representative))
    atomic_write_bytes(output, flatbuffer)
