"""TFLite export: all three quantizations, the uint8-in / raw-ConvDet-out contract, Keras equivalence,
int8 detection agreement on real KITTI images, metadata, benchmarks and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from conftest import one_line_error

from squeezedet.cli import main
from squeezedet.core.anchors import grid_size
from squeezedet.core.metadata import read_metadata, sidecar_path
from squeezedet.core.preprocess import read_image_rgb, resize_for_model
from squeezedet.core.runtime import TFLiteModel
from squeezedet.errors import DataError, ModelFileError
from squeezedet.export import calibration
from squeezedet.export.equivalence import REPORT_NAME, detection_agreement

CALIB_IMAGES = 8


@pytest.fixture(scope="module")
def untrained(tmp_path_factory, sample_root):
    """A tiny untrained SqueezeDet saved as weights + config.yaml (for error paths: no training needed)."""
    from squeezedet.config import load_config
    from squeezedet.model import build_model

    d = tmp_path_factory.mktemp("untrained")
    (d / "config.yaml").write_text(yaml.safe_dump({
        "model": {"input_width": 128, "input_height": 64, "dropout": 0.0},
        "data": {"root": str(sample_root)},
    }))
    cfg = load_config(d / "config.yaml")
    build_model(cfg.model).save_weights(str(d / "w.weights.h5"))
    return cfg, d / "w.weights.h5"


@pytest.fixture(scope="module")
def exports(tiny_trained, sample_root, tmp_path_factory):
    """fp32 / int8 via the Python API and fp16 via the CLI, from the trained tiny model."""
    from squeezedet.export.exporter import export_tflite

    out = tmp_path_factory.mktemp("exports")
    kw = {"calib_root": sample_root, "calib_images": CALIB_IMAGES, "calib_split": "train.txt",
          "check_root": sample_root, "check_split": "val.txt", "check_images": 4}
    paths = {q: export_tflite(tiny_trained.config, tiny_trained.weights_path, out / f"{q}.tflite", q, **kw)
             for q in ("fp32", "int8")}
    rc = main(["export", "--weights", str(tiny_trained.weights_path), "--config", str(tiny_trained.config_path),
               "--quantize", "fp16", "--check-data", str(sample_root), "--check-split", "val.txt",
               "--output", str(out / "fp16.tflite")])
    assert rc == 0
    paths["fp16"] = out / "fp16.tflite"
    return paths


def test_calibration_selection_is_seeded_and_counted(sample_root, tmp_path):
    a = calibration.calibration_paths(sample_root, "train.txt", 5, seed=0)
    assert a == calibration.calibration_paths(sample_root, "train.txt", 5, seed=0)
    assert len(set(a)) == 5 and all(p.stem <= "000074" for p in a)  # train split only
    with pytest.raises(DataError, match="75 images found, 80 asked for"):
        calibration.calibration_paths(sample_root, "train.txt", 80)
    flat = tmp_path / "frames"
    flat.mkdir()
    with pytest.raises(DataError, match="no images"):
        calibration.list_images(flat)
    (flat / "a.jpg").write_bytes((sample_root / "training" / "image_2" / "000000.jpg").read_bytes())
    assert calibration.list_images(flat) == [flat / "a.jpg"]
    frame = next(calibration.load_frames([flat / "a.jpg"], (128, 64)))
    assert frame.shape == (64, 128, 3) and frame.dtype == np.uint8


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--quantize", "int4"], "unknown quantization 'int4'"),
        (["--format", "caffe"], "unknown --format 'caffe'"),
        (["--format", "onnx", "--quantize", "fp16"], "ONNX export supports fp32, int8, not fp16"),
        (["--format", "onnx", "--quantize", "fp32"], "ONNX output must end in .onnx"),
        (["--calib-data", "/nonexistent/kitti"], "/nonexistent/kitti: calibration data folder not found"),
        (["--calib-images", "500"], "75 images found, 500 asked for"),
    ],
)
def test_export_cli_errors_are_one_line(untrained, tmp_path, capsys, args, needle):
    _, weights = untrained
    out = tmp_path / "m.tflite"
    err = one_line_error(capsys, "export", "--weights", str(weights), "--output", str(out), *args)
    assert needle in err
    assert not out.exists()


def test_export_missing_weights(tmp_path, capsys):
    err = one_line_error(capsys, "export", "--weights", str(tmp_path / "nope.weights.h5"), "--output",
                         str(tmp_path / "m.tflite"))
    assert "nope.weights.h5: weights file not found" in err


def test_rejected_conversion_leaves_nothing(untrained, tmp_path, monkeypatch):
    from squeezedet.export import exporter, tflite

    def reject(*_a, **_k):
        raise RuntimeError("op FOO is not supported\nlong converter log")

    monkeypatch.setattr(tflite, "convert", reject)
    cfg, weights = untrained
    with pytest.raises(ModelFileError, match="converter rejected the model \\(fp32\\): op FOO is not supported$"):
        exporter.export_tflite(cfg, weights, tmp_path / "m.tflite", "fp32", check_images=0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b"garbage, not a flatbuffer at all"])
def test_corrupt_tflite_is_a_clear_error(tmp_path, capsys, content):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(content)
    with pytest.raises(ModelFileError, match="bad.tflite"):
        TFLiteModel(bad)
    err = one_line_error(capsys, "benchmark", "--model", str(bad), "--threads", "1", "--runs", "1")
    assert str(bad) in err


@pytest.mark.slow
def test_exports_take_uint8_and_return_raw_convdet(exports, tiny_trained):
    cfg = tiny_trained.config.model
    gw, gh = grid_size(cfg.input_width, cfg.input_height)
    sizes = {}
    for quant, path in exports.items():
        m = TFLiteModel(path)
        assert m.input_shape == (1, cfg.input_height, cfg.input_width, 3)
        assert m.input_dtype == np.uint8, quant
        assert tuple(m.output["shape"]) == (1, gh, gw, cfg.num_anchors * (len(cfg.classes) + 5))
        assert m.output["dtype"] == np.float32
        sizes[quant] = path.stat().st_size
    int8_tensors = [t for t in TFLiteModel(exports["int8"]).interpreter.get_tensor_details() if t["dtype"] == np.int8]
    assert len(int8_tensors) > 50  # every conv runs in int8
    assert sizes["int8"] < 0.3 * sizes["fp32"] and sizes["fp16"] < 0.6 * sizes["fp32"]


@pytest.mark.slow
def test_sidecar_metadata_and_hash(exports, tiny_trained, tmp_path):
    cfg = tiny_trained.config
    for quant, path in exports.items():
        meta = read_metadata(path)
        assert meta.quantization == quant and meta.input_dtype == "uint8"
        assert meta.class_names == cfg.model.classes and meta.input_size == cfg.model.input_size
        assert meta.config_hash == cfg.hash() and meta.model_id == f"squeezedet-{quant}-{cfg.hash()[:8]}"
        assert meta.score_threshold == cfg.postprocess.score_threshold
        assert np.allclose(meta.anchor_shapes, cfg.model.anchor_shapes)
    assert read_metadata(exports["int8"]).extra["calibration_images"] == CALIB_IMAGES
    tampered = tmp_path / "m.tflite"
    data = bytearray(exports["fp32"].read_bytes())
    data[-100] ^= 0xFF
    tampered.write_bytes(bytes(data))
    sidecar_path(tampered).write_text(sidecar_path(exports["fp32"]).read_text())
    with pytest.raises(ModelFileError, match="model_sha256 does not match m.tflite"):
        read_metadata(tampered)


@pytest.mark.slow
def test_fp32_matches_keras_on_real_images(exports, tiny_trained, sample_root):
    from squeezedet.export.graph import load_inference_model

    cfg = tiny_trained.config
    model = load_inference_model(cfg.model, tiny_trained.weights_path)
    tfl = TFLiteModel(exports["fp32"])
    for p in calibration.list_images(sample_root, "val.txt")[:4]:
        x = resize_for_model(read_image_rgb(p), cfg.model.input_size)[None]
        ref = np.asarray(model(x, training=False))
        # 1e-4 absolute, plus float32 rounding on the large (|x| ~ 100) logits of an overfitted model.
        np.testing.assert_allclose(tfl(x), ref, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_int8_detections_match_fp32_on_real_images(exports, tiny_trained):
    from squeezedet.inference import TFLitePredictor

    images = [read_image_rgb(p) for p in calibration.list_images(tiny_trained.data_root, "train.txt")]
    fp32, int8 = TFLitePredictor(exports["fp32"]), TFLitePredictor(exports["int8"])
    ref, got = [fp32.predict(im) for im in images], [int8.predict(im) for im in images]
    agree = detection_agreement(ref, got, min_iou=0.8)
    assert agree["confident"] >= 4, agree
    # Measured (docs/export.md): 23 of 26 at IoU > 0.8, worst 0.76; int8 activations move the smallest boxes
    # by about one model pixel, 3.2 frame pixels at this input size. No object is lost.
    assert agree["agreement"] >= 0.85 and agree["worst_iou"] > 0.7, agree
    assert detection_agreement(ref, got, min_iou=0.5)["agreement"] == 1.0


@pytest.mark.slow
def test_export_report_beside_the_models(exports, sample_root):
    report = json.loads((exports["fp32"].parent / REPORT_NAME).read_text())
    assert set(report) == {"fp32.tflite", "fp16.tflite", "int8.tflite"}
    assert report["fp32.tflite"]["raw_max_abs_dev"] < 1e-2
    assert report["fp32.tflite"]["box_max_dev_px"] < 0.01
    int8 = report["int8.tflite"]
    assert int8["num_images"] == 4 and int8["raw_reference"].startswith("keras, class logits centred")
    calib = {str(p) for p in calibration.calibration_paths(sample_root, "train.txt", CALIB_IMAGES)}
    assert not calib & set(int8["images"])


@pytest.mark.slow
def test_benchmark_counts_and_json(exports, tiny_trained, tmp_path, capsys):
    from squeezedet.export.graph import load_inference_model
    from squeezedet.model.squeezedet import count_macs, count_params

    out = tmp_path / "bench.json"
    rc = main(["benchmark", "--model", str(exports["int8"]), "--model", str(tiny_trained.weights_path),
               "--config", str(tiny_trained.config_path), "--threads", "1,2", "--runs", "2", "--warmup", "1",
               "--output", str(out)])
    assert rc == 0
    assert "| tflite int8 | litert | 2 |" in capsys.readouterr().out
    rows = json.loads(out.read_text())["results"]
    assert [r["format"] for r in rows] == ["keras fp32", "tflite int8", "tflite int8"]
    model = load_inference_model(tiny_trained.config.model, tiny_trained.weights_path)
    w, h = tiny_trained.config.model.input_size
    keras_row, tfl_row = rows[0], rows[1]
    assert keras_row["params"] == count_params(model) and keras_row["macs"] == count_macs(model)
    # The .tflite adds the 1x1 normalisation conv (12 params, 9 MACs a pixel) and one scale per output channel.
    channels = model.output.shape[-1]
    assert tfl_row["params"] - keras_row["params"] == 12 + channels
    assert tfl_row["macs"] - keras_row["macs"] == 9 * w * h
    assert 0 < tfl_row["gzip_bytes"] < tfl_row["size_bytes"] and tfl_row["median_ms"] > 0


@pytest.mark.slow
def test_benchmark_takes_a_saved_keras_model(tiny_trained, tmp_path, capsys):
    from squeezedet.export.graph import load_inference_model
    from squeezedet.model.squeezedet import count_macs

    model = load_inference_model(tiny_trained.config.model, tiny_trained.weights_path)
    saved = tmp_path / "tiny.keras"
    model.save(saved)
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--model", str(saved), "--threads", "1", "--runs", "2", "--warmup", "1",
                 "--output", str(out)]) == 0  # no --config: a .keras file carries its architecture
    row = json.loads(out.read_text())["results"][0]
    assert (row["model"], row["format"], row["macs"]) == ("tiny.keras", "keras fp32", count_macs(model))
    assert row["size_bytes"] == saved.stat().st_size and row["median_ms"] > 0
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    err = one_line_error(capsys, "benchmark", "--model", str(bad), "--threads", "1", "--runs", "1")
    assert "bad.keras: cannot load the Keras model" in err


# ---- ONNX int8 graph rewrites (squeezedet.export.onnx) ----------------------------------------------------
def _mini_export_onnx(path, width: int = 32, height: int = 16) -> None:
    """SqueezeDet's export graph in small: uint8 NHWC image -> Cast -> NCHW -> the 1x1 normalisation conv
    (BGR flip, minus means) -> conv1 3x3 stride 2 -> ReLU -> a fire module's expand 1x1 and 3x3 -> Concat ->
    NHWC. Random weights, scaled so activations stay in a sensible range."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def conv(name, src, cin, cout, k, stride=1, pads=(0, 0, 0, 0)):
        w = rng.normal(0, 1 / np.sqrt(cin * k * k), (cout, cin, k, k)).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(
            rng.normal(0, 0.1, cout).astype(np.float32), f"{name}_b")])
        return helper.make_node("Conv", [src, f"{name}_w", f"{name}_b"], [name], kernel_shape=[k, k],
                                strides=[stride, stride], pads=list(pads))

    inits = [numpy_helper.from_array(np.eye(3, dtype=np.float32)[::-1].reshape(3, 3, 1, 1).copy(), "norm_w"),
             numpy_helper.from_array(-np.array([103.9, 116.8, 123.7], np.float32), "norm_b")]
    nodes = [helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "norm_w", "norm_b"], ["norm"], kernel_shape=[1, 1]),
             conv("conv1", "norm", 3, 8, 3, 2, (0, 0, 1, 1)),
             helper.make_node("Relu", ["conv1"], ["relu1"]),
             conv("e1", "relu1", 8, 4, 1), helper.make_node("Relu", ["e1"], ["r1"]),
             conv("e3", "relu1", 8, 6, 3, 1, (1, 1, 1, 1)), helper.make_node("Relu", ["e3"], ["r3"]),
             helper.make_node("Concat", ["r1", "r3"], ["cat"], axis=1),
             helper.make_node("Transpose", ["cat"], ["out"], perm=[0, 2, 3, 1])]
    graph = helper.make_graph(
        nodes, "mini", [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, height, width, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, height // 2, width // 2, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _run_onnx(model, x):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]


def test_onnx_widening_to_four_input_channels_is_exact(tmp_path):
    """conv1 reads the 3-channel normalisation: both get a zero 4th channel (ONNX Runtime's int8 kernel
    takes channels in fours) and the float output is unchanged."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import numpy_helper

    from squeezedet.export.onnx import widen_thin_convs

    _mini_export_onnx(tmp_path / "mini.onnx")
    model = onnx.load(str(tmp_path / "mini.onnx"))
    x = np.random.default_rng(1).integers(0, 256, (1, 16, 32, 3), np.uint8)
    before = _run_onnx(model, x)
    assert widen_thin_convs(model) == 1 and widen_thin_convs(model) == 0
    shapes = {i.name: numpy_helper.to_array(i).shape for i in model.graph.initializer}
    assert (shapes["norm_w"], shapes["norm_b"], shapes["conv1_w"]) == ((4, 3, 1, 1), (4,), (8, 4, 3, 3))
    assert shapes["e1_w"] == (4, 8, 1, 1)  # fed by a ReLU, and 8 channels already: untouched
    np.testing.assert_allclose(_run_onnx(model, x), before, rtol=1e-6, atol=1e-4)


def test_onnx_int8_layout_on_a_small_graph(tmp_path, sample_root):
    """quantize_int8: int8 weights, uint8 activations, the image fed to the first quantized conv without a
    Cast or a QuantizeLinear (scale 1, zero point 0 is the identity on pixels; dropping it changes no bit),
    each Concat input quantized like the Concat's output; and the int8 output still close to float."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, numpy_helper

    from squeezedet.export.onnx import drop_identity_quantize, quantize_int8

    _mini_export_onnx(tmp_path / "mini.onnx")
    paths = calibration.list_images(sample_root, "train.txt")[:4]
    quantize_int8(tmp_path / "mini.onnx", tmp_path / "int8.onnx", paths, (32, 16))
    model = onnx.load(str(tmp_path / "int8.onnx"))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    assert not [n for n in graph.node if n.op_type == "Cast"] and drop_identity_quantize(model) == 0
    assert inits["conv1_w_quantized"].data_type == TensorProto.INT8
    assert list(inits["conv1_w_quantized"].dims) == [8, 4, 3, 3]
    producer = {o: n for n in graph.node for o in n.output}
    concat = next(n for n in graph.node if n.op_type == "Concat")
    out_q = next(n for n in graph.node if concat.output[0] in n.input)
    assert numpy_helper.to_array(inits[out_q.input[2]]).dtype == np.uint8
    for name in concat.input:
        assert producer[name].input[1:3] == out_q.input[1:3]
    x = resize_for_model(read_image_rgb(paths[0]), (32, 16))[None]
    fp32, int8 = _run_onnx(onnx.load(str(tmp_path / "mini.onnx")), x), _run_onnx(model, x)
    assert np.abs(int8 - fp32).max() < 0.02 * np.abs(fp32).max()  # measured 1.5 % of the largest output
