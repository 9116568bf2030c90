"""The .tflite rewrite after conversion (shared vectors, readable names) changes bytes, not results:
outputs are bit-identical, the interface is untouched, and the int8 zero-points are stored once."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ASSETS

from squeezedet.core.preprocess import read_image_rgb, resize_for_model
from squeezedet.export import calibration
from squeezedet.export.flatbuffer import compact_tflite, same_outputs, schema, short_name

pytestmark = pytest.mark.slow

INPUT = (128, 64)


@pytest.fixture(scope="module")
def converted(sample_root):
    """{quant: converter output, not compacted} of an untrained SqueezeDet at 128x64."""
    from squeezedet.config import Config
    from squeezedet.export.graph import export_graph
    from squeezedet.export.tflite import convert
    from squeezedet.model import build_model

    cfg = Config()
    cfg.model.input_width, cfg.model.input_height = INPUT
    model = build_model(cfg.model, training_dropout=False)
    paths = calibration.list_images(sample_root, "train.txt")[:4]
    ranges = np.full(cfg.model.num_anchors * (len(cfg.model.classes) + 5), 0.5, np.float32)
    return {
        "fp32": convert(export_graph(model, cfg.model), "fp32"),
        "int8": convert(export_graph(model, cfg.model, ranges), "int8",
                        calibration.representative_dataset(paths, INPUT)),
    }


def run(data: bytes, frames, tmp_path, name: str, reference_kernels: bool = False):
    from ai_edge_litert import interpreter as litert

    path = tmp_path / name
    path.write_bytes(data)
    kwargs = {"experimental_op_resolver_type": litert.OpResolverType.BUILTIN_REF} if reference_kernels else {}
    interp = litert.Interpreter(model_path=str(path), num_threads=1, **kwargs)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    results = []
    for frame in frames:
        interp.set_tensor(inp["index"], frame[None])
        interp.invoke()
        results.append(interp.get_tensor(out["index"]).copy())
    return results, inp, out, interp.get_signature_list()


@pytest.mark.parametrize("quant", ["fp32", "int8"])
@pytest.mark.parametrize("reference_kernels", [False, True])
def test_outputs_and_interface_are_unchanged(converted, quant, reference_kernels, sample_root, tmp_path):
    frames = [resize_for_model(read_image_rgb(p), INPUT) for p in calibration.list_images(sample_root, "val.txt")[:2]]
    before = run(converted[quant], frames, tmp_path, "a.tflite", reference_kernels)
    after = run(compact_tflite(converted[quant]), frames, tmp_path, "b.tflite", reference_kernels)
    for a, b in zip(before[0], after[0]):
        assert np.array_equal(a, b)
        assert np.abs(a).max() > 0  # a real output, not two empty ones
    for key in ("name", "shape", "dtype", "quantization"):
        assert before[1][key] == after[1][key] if key != "shape" else (before[1][key] == after[1][key]).all()
        assert before[2][key] == after[2][key] if key != "shape" else (before[2][key] == after[2][key]).all()
    assert before[3] == after[3]  # signature: serving_default, image -> output_0


def zero_point_vectors(data: bytes):
    """(address, length) of every per-channel zero-point vector in the flatbuffer."""
    model = schema().Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    base = np.frombuffer(data, np.uint8).ctypes.data
    found = []
    for i in range(graph.TensorsLength()):
        q = graph.Tensors(i).Quantization()
        if q is not None and q.ZeroPointLength() > 1:
            found.append((q.ZeroPointAsNumpy().ctypes.data - base, q.ZeroPointLength()))
    return found


def test_int8_zero_points_are_stored_once_per_length(converted):
    before, after = zero_point_vectors(converted["int8"]), zero_point_vectors(compact_tflite(converted["int8"]))
    assert len(before) == len(after) > 50  # every kernel and bias is per-channel
    assert len({addr for addr, _ in before}) == len(before)
    lengths = {n for _, n in after}
    assert len({addr for addr, _ in after}) == len(lengths)  # one all-zero vector per channel count
    saved = sum(8 * n for _, n in before) - sum(8 * n for n in lengths)
    assert len(converted["int8"]) - len(compact_tflite(converted["int8"])) >= saved


def test_names_say_layer_and_role_and_data_stays_aligned(converted):
    data = compact_tflite(converted["int8"])
    model = schema().Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    names = [graph.Tensors(i).Name().decode() for i in range(graph.TensorsLength())]
    assert len(set(names)) == len(names)
    assert {"conv1/kernel", "conv1/bias", "fire2_squeeze1x1/kernel", "fire11_expand3x3/bias",
            "convdet_unit_range/kernel", "fire9_concat/concat"} <= set(names)
    assert max(map(len, names)) < 40
    base = np.frombuffer(data, np.uint8).ctypes.data
    offsets = [(model.Buffers(i).DataAsNumpy().ctypes.data - base) % 16
               for i in range(model.BuffersLength()) if model.Buffers(i).DataLength()]
    assert offsets and not any(offsets)
    assert compact_tflite(data) == data  # idempotent


def test_export_keeps_the_converter_file_unless_compaction_is_exact(converted, monkeypatch, caplog):
    from squeezedet.export import tflite

    data = converted["int8"]
    assert tflite.compacted(data) == compact_tflite(data)
    assert same_outputs(converted["fp32"], converted["fp32"]) and not same_outputs(converted["fp32"], data)
    monkeypatch.setattr(tflite, "same_outputs", lambda a, b: False)
    assert tflite.compacted(data) == data
    monkeypatch.undo()
    monkeypatch.setattr(tflite, "compact_tflite", lambda d: d[:100])  # not a model at all
    assert tflite.compacted(data) == data
    assert "keeping the converter's file" in caplog.text


def test_short_name():
    assert short_name("m_1/backbone_1/fire2_squeeze1x1_1/Relu;m_1/backbone_1/x/BiasAdd") == "fire2_squeeze1x1/Relu"
    assert short_name("tfl.quantize") == "tfl.quantize"
    assert short_name("serving_default_image:0") == "serving_default_image:0"


def test_bundled_int8_model_is_at_most_2_2_mb():
    # Issue target for SqueezeDet int8 (decimal MB): 2.08 M int8 weights + per-channel scales + graph.
    assert (ASSETS / "models" / "squeezedet_kitti_int8.tflite").stat().st_size <= 2_200_000
