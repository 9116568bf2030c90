"""Keras export graph -> OpenVINO IR (``model.xml`` + ``model.bin``): fp32, fp16 or int8 (NNCF).

Route: the ONNX graph of :mod:`squeezedet.export.onnx` (tf2onnx, with the head's clip as one Clip op),
read by ``openvino.convert_model``. ``convert_model`` also takes the Keras model directly, but then the
clip stays a Minimum/Maximum pair and int8 quantizes the head over its unclipped range (see
``min_max_to_clip``).

int8 is NNCF post-training quantization: per-channel int8 weights, per-tensor activations, ranges from
real calibration images preprocessed exactly as at inference, fast bias correction; the per-channel
rescale of the head (the graph's only Multiply) stays float, as in the other formats. Weights use 7
bits in every layer (NNCF's overflow fix): CPUs without VNNI (AVX2) multiply u8 x s8 with a saturating
16-bit add, and with the default (first layer only) the tiny test model's confidence logits were up to
8.1 off; with the fix 1.4, close to TFLite's 0.87. Speed is the same.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from squeezedet.core.preprocess import read_image_rgb, resize_for_model

log = logging.getLogger(__name__)


def quantize_int8(ov_model, calib_paths, input_size):
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    dataset = nncf.Dataset(list(calib_paths), lambda p: resize_for_model(read_image_rgb(p), input_size)[None])
    return nncf.quantize(
        ov_model, dataset, subset_size=len(calib_paths), preset=nncf.QuantizationPreset.MIXED,
        ignored_scope=nncf.IgnoredScope(types=["Multiply"], validate=False),
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE),
    )


def write_openvino(graph, output: Path, quantize: str, calib_paths, input_size) -> None:
    """Write ``output`` (.xml) and its .bin; the .bin lands first, so a reader never sees a new .xml
    pointing into an old .bin."""
    import onnx
    import openvino as ov

    from squeezedet.export.onnx import to_onnx

    output = Path(output)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".openvino_export_") as tmp:
        onnx_path = Path(tmp) / "fp32.onnx"
        onnx.save(to_onnx(graph), str(onnx_path))
        ov_model = ov.convert_model(str(onnx_path))
        if quantize == "int8":
            log.info("quantizing to int8 with NNCF on %d images", len(calib_paths))
            ov_model = quantize_int8(ov_model, calib_paths, input_size)
        xml = Path(tmp) / output.name
        ov.save_model(ov_model, str(xml), compress_to_fp16=quantize == "fp16")
        os.replace(xml.with_suffix(".bin"), output.with_suffix(".bin"))
        os.replace(xml, output)
