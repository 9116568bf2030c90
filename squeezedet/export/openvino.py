"""Keras export graph -> OpenVINO IR (``model.xml`` + ``model.bin``): fp32, fp16 or int8 (NNCF).

Route: ``openvino.convert_model`` takes the Keras model directly (TensorFlow frontend), no ONNX step.
int8 is NNCF post-training quantization: per-channel int8 weights, per-tensor activations, ranges
from real calibration images preprocessed exactly as at inference, fast bias correction; the per-channel
rescale of the head (the graph's only Multiply) stays float, as in the other formats.
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

    dataset = nncf.Dataset(list(calib_paths), lambda p: resize_for_model(read_image_rgb(p), input_size)[None])
    return nncf.quantize(
        ov_model, dataset, subset_size=len(calib_paths), preset=nncf.QuantizationPreset.MIXED,
        ignored_scope=nncf.IgnoredScope(types=["Multiply"], validate=False),
    )


def write_openvino(graph, output: Path, quantize: str, calib_paths, input_size) -> None:
    """Write ``output`` (.xml) and its .bin; the .bin lands first, so a reader never sees a new .xml
    pointing into an old .bin."""
    import openvino as ov

    output = Path(output)
    ov_model = ov.convert_model(graph)
    if quantize == "int8":
        log.info("quantizing to int8 with NNCF on %d images", len(calib_paths))
        ov_model = quantize_int8(ov_model, calib_paths, input_size)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".openvino_export_") as tmp:
        xml = Path(tmp) / output.name
        ov.save_model(ov_model, str(xml), compress_to_fp16=quantize == "fp16")
        os.replace(xml.with_suffix(".bin"), output.with_suffix(".bin"))
        os.replace(xml, output)
