"""Back ends (LiteRT, ONNX Runtime, OpenVINO) and the ONNX / OpenVINO exports: choice of engine, the
exported files run, fp32 matches Keras, int8 detections match fp32 on real images, one-line errors for
corrupt files, and `squeezedet val --model` on .onnx and OpenVINO IR. Each engine's tests are skipped
only when its extra is not installed (CI installs both)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error

from squeezedet.backends import BackendOptions, load_backend, resolve_backend
from squeezedet.cli import main
from squeezedet.core.metadata import FORMAT, read_metadata, sidecar_path, write_metadata
from squeezedet.core.preprocess import read_image_rgb, resize_for_model
from squeezedet.errors import ConfigError, ModelFileError
from squeezedet.export import calibration
from squeezedet.export.equivalence import REPORT_NAME, detection_agreement

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "assets" / "models" / "squeezedet_kitti_int8.tflite"
#: format -> (suffix, back end, python package of its extra)
ENGINES = {"onnx": (".onnx", "onnxruntime", "onnxruntime"), "openvino": (".xml", "openvino", "openvino")}
CALIB_IMAGES = 8


def need(fmt: str) -> None:
    pytest.importorskip(ENGINES[fmt][2], reason=f"the [{'onnx' if fmt == 'onnx' else 'openvino'}] extra is not installed")


def test_auto_picks_the_engine_by_file_type(tmp_path):
    assert resolve_backend("m.tflite") == "litert"
    assert resolve_backend("m.xml") == "openvino"
    assert resolve_backend("m.onnx") == ("onnxruntime" if _installed("onnxruntime") else "openvino")
    assert resolve_backend("m.onnx", "openvino") == "openvino"  # OpenVINO reads ONNX too
    with pytest.raises(ModelFileError, match="back end openvino reads .xml or .onnx files, not '.tflite'"):
        resolve_backend("m.tflite", "openvino")
    with pytest.raises(ModelFileError, match="unknown model type '.pb'"):
        resolve_backend("m.pb")
    with pytest.raises(ConfigError, match="unknown back end 'tensorflow'"):
        resolve_backend("m.tflite", "tensorflow")


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_one_engine_vocabulary_for_the_cli_the_daemon_and_the_registry():
    """The CLI's flags are made from the options model the daemon's model keys extend: same names, defaults,
    parsing; and the back-end names are the registry's."""
    import argparse

    from pipeline.config import ModelConfig
    from squeezedet.backends import BACKEND_NAMES, REGISTRY
    from squeezedet.commands import add_backend_arguments, backend_options

    assert BACKEND_NAMES == ("auto", *REGISTRY)
    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    assert vars(parser.parse_args([])) == {"backend": "auto", "device": "CPU", "providers": ("cpu",), "cache_dir": None}
    args = parser.parse_args(["--backend", "onnxruntime", "--providers", "TensorRT, cuda", "--cache-dir", "c"])
    cfg = ModelConfig(path="m.onnx", backend="onnxruntime", providers=["tensorrt", "cuda"], cache_dir="c")
    assert backend_options(args) == cfg.options() and args.backend == cfg.backend
    with pytest.raises(SystemExit):
        parser.parse_args(["--providers", "rocm"])


def test_onnxruntime_provider_list_skips_missing_and_ends_with_cpu(tmp_path):
    pytest.importorskip("onnxruntime")
    from squeezedet.backends.onnxruntime import provider_list

    cpu_only = ["CPUExecutionProvider"]
    assert provider_list(("tensorrt", "cuda", "cpu"), None, True, cpu_only) == ["CPUExecutionProvider"]
    jetson = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    got = provider_list(("tensorrt", "cuda"), str(tmp_path / "trt"), True, jetson)
    assert got[0] == ("TensorrtExecutionProvider", {
        "trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(tmp_path / "trt"),
        "trt_timing_cache_enable": True, "trt_timing_cache_path": str(tmp_path / "trt")})
    assert got[1:] == ["CUDAExecutionProvider", "CPUExecutionProvider"] and (tmp_path / "trt").is_dir()
    with pytest.raises(ConfigError, match="unknown onnxruntime provider 'rocm'"):
        provider_list(("rocm",), None, True, cpu_only)


def test_first_format_sidecars_still_load(tmp_path):
    """A squeezedet-tflite/1 sidecar (hash under tflite_sha256, no model_format / weights_sha256), as the
    bundled model had until it was re-exported, still reads."""
    current = json.loads(sidecar_path(BUNDLED).read_text())
    assert current["format"] == FORMAT
    legacy = {k: v for k, v in current.items() if k not in ("model_sha256", "model_format", "weights_sha256")}
    legacy.update({"format": "squeezedet-tflite/1", "tflite_sha256": current["model_sha256"]})
    model = tmp_path / "m.tflite"
    shutil.copy(BUNDLED, model)
    sidecar_path(model).write_text(json.dumps(legacy))
    meta = read_metadata(model)
    assert meta.model_sha256 == legacy["tflite_sha256"] and meta.model_format == "tflite"
    assert meta == read_metadata(BUNDLED)
    sidecar_path(model).write_text(json.dumps({**legacy, "tflite_sha256": "0" * 64}))
    with pytest.raises(ModelFileError, match="m.json: tflite_sha256 does not match m.tflite"):
        read_metadata(model)
    write_metadata(model, meta)  # rewritten in the current format
    new = json.loads(sidecar_path(model).read_text())
    assert new["format"] == FORMAT and "tflite_sha256" not in new and new["model_sha256"] == legacy["tflite_sha256"]


@pytest.mark.parametrize("fmt", list(ENGINES))
@pytest.mark.parametrize("content", [b"", b"garbage, not a model at all" * 10])
def test_corrupt_model_files_are_one_line_errors(fmt, content, tmp_path, capsys, sample_root):
    need(fmt)
    suffix, backend, _ = ENGINES[fmt]
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(content)
    if suffix == ".xml":
        bad.with_suffix(".bin").write_bytes(content)
    write_metadata(bad, read_metadata(BUNDLED))
    with pytest.raises(ModelFileError, match=f"bad{suffix}: .*rejected the model"):
        load_backend(bad)
    err = one_line_error(capsys, "val", "--model", str(bad), "--data", str(sample_root), "--split", "val.txt",
                         "--output", str(tmp_path / "val"))
    assert f"bad{suffix}" in err and "rejected the model" in err
    err = one_line_error(capsys, "benchmark", "--model", str(bad), "--threads", "1", "--runs", "1")
    assert f"bad{suffix}" in err


# ---- real exports of the tiny trained model -------------------------------------------------------
@pytest.fixture(scope="module")
def exports(tiny_trained, sample_root, tmp_path_factory):
    """ONNX fp32/int8 and OpenVINO fp32/fp16/int8 of the trained tiny model (the engines installed)."""
    from squeezedet.export.exporter import export_model

    out = tmp_path_factory.mktemp("backend_exports")
    kw = {"calib_root": sample_root, "calib_images": CALIB_IMAGES, "calib_split": "train.txt",
          "check_root": sample_root, "check_split": "val.txt", "check_images": 2}
    paths = {}
    for fmt, quants in (("onnx", ("fp32", "int8")), ("openvino", ("fp32", "fp16", "int8"))):
        if not _installed(ENGINES[fmt][2]):
            continue
        for q in quants:
            paths[fmt, q] = export_model(tiny_trained.config, tiny_trained.weights_path,
                                         out / f"{fmt}_{q}{ENGINES[fmt][0]}", fmt, q, **kw)
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(ENGINES))
def test_exported_file_runs_uint8_in_raw_convdet_out(exports, tiny_trained, fmt):
    need(fmt)
    cfg = tiny_trained.config.model
    for q in ("fp32", "int8"):
        path = exports[fmt, q]
        meta = read_metadata(path)
        assert (meta.model_format, meta.quantization, meta.class_names) == (fmt, q, list(cfg.classes))
        engine = load_backend(path, options=BackendOptions(num_threads=1))
        assert engine.name == ENGINES[fmt][1]
        assert engine.input_shape == (1, cfg.input_height, cfg.input_width, 3)
        out = engine(np.zeros(engine.input_shape, np.uint8))
        assert out.dtype == np.float32 and out.shape == (1, cfg.input_height // 16, cfg.input_width // 16,
                                                          cfg.num_anchors * (len(cfg.classes) + 5))
    if fmt == "openvino":
        assert path.with_suffix(".bin").is_file() and meta.weights_sha256


@pytest.mark.slow
@pytest.mark.parametrize("fmt, quant, rtol, atol", [
    ("onnx", "fp32", 1e-5, 1e-4),
    ("openvino", "fp32", 1e-5, 1e-4),
    # fp16 weights and activations: ~3 significant digits of logits up to |x| ~ 100
    ("openvino", "fp16", 1e-2, 0.15),
])
def test_raw_outputs_match_keras(exports, tiny_trained, sample_root, fmt, quant, rtol, atol):
    need(fmt)
    from squeezedet.export.graph import load_inference_model

    cfg = tiny_trained.config
    model = load_inference_model(cfg.model, tiny_trained.weights_path)
    engine = load_backend(exports[fmt, quant])
    for p in calibration.list_images(sample_root, "val.txt")[:4]:
        x = resize_for_model(read_image_rgb(p), cfg.model.input_size)[None]
        np.testing.assert_allclose(engine(x), np.asarray(model(x, training=False)), rtol=rtol, atol=atol)


@pytest.mark.slow
@pytest.mark.parametrize("fmt, min_agreement, min_iou, max_lost", [
    # Measured on this overfitted 384x128 model (|logits| up to ~300, calibrated on 8 images), its 22-26
    # confident detections, boxes in 1242x375 frame pixels (one model pixel = 3.2 of them): reproduced with
    # IoU > 0.8 by OpenVINO/NNCF 22/26 (worst IoU 0.60), TFLite 23/26 (0.76, tests/test_export.py), every
    # one with IoU > 0.5. ONNX Runtime with int8 weights (s8 QDQ) reproduces 21/22 of the model trained
    # on the authors' targets, worst IoU 0.80, none lost (OpenVINO 22/22, worst 0.85, on the same model);
    # the earlier uint8 weights lost a car three-quarters hidden behind another (IoU 0.38). The bounds
    # leave two boxes and 0.1 IoU for a differently trained fixture. On the real KITTI model every int8
    # back end keeps Car moderate AP within 0.1 point of fp32 (benchmarks/export_compare.py).
    ("onnx", 0.9, 0.7, 0),
    ("openvino", 0.8, 0.55, 0),
])
def test_int8_detections_match_fp32_on_real_images(exports, tiny_trained, fmt, min_agreement, min_iou, max_lost):
    need(fmt)
    from squeezedet.inference import ModelPredictor

    images = [read_image_rgb(p) for p in calibration.list_images(tiny_trained.data_root, "train.txt")]
    fp32, int8 = ModelPredictor(exports[fmt, "fp32"]), ModelPredictor(exports[fmt, "int8"])
    ref, got = [fp32.predict(im) for im in images], [int8.predict(im) for im in images]
    agree = detection_agreement(ref, got, min_iou=0.8)
    assert agree["confident"] >= 4, agree
    assert agree["agreement"] >= min_agreement, agree
    if min_iou is not None:
        assert agree["worst_iou"] > min_iou, agree
    found = detection_agreement(ref, got, min_iou=0.5)
    assert found["confident"] - found["agreed"] <= max_lost, found  # objects lost


@pytest.mark.slow
def test_onnx_int8_is_int8_weight_qdq_fed_by_the_uint8_image(exports):
    """The int8 ONNX layout that ONNX Runtime runs fastest (squeezedet.export.onnx): int8 weights, uint8
    activations, every convolution but the 3-channel normalisation reading channels in fours, and the
    uint8 image feeding the first quantized convolution directly (no Cast, no QuantizeLinear of it)."""
    need("onnx")
    import onnx
    from onnx import TensorProto

    graph = onnx.load(str(exports["onnx", "int8"])).graph
    inits = {i.name: i for i in graph.initializer}
    weights = [inits[n.input[0]] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
               and len(inits[n.input[0]].dims) == 4]
    assert weights and {w.data_type for w in weights} == {TensorProto.INT8}
    activation_zero_points = {inits[n.input[2]].data_type for n in graph.node if n.op_type == "QuantizeLinear"}
    assert activation_zero_points == {TensorProto.UINT8}
    assert sorted(w.dims[1] % 4 for w in weights)[-2:] == [0, 3]  # only the normalisation reads 3 channels
    tensor, path = "image", []
    while len(after := [n for n in graph.node if tensor in n.input]) == 1 and after[0].op_type == "Transpose":
        tensor, path = after[0].output[0], path + ["Transpose"]
    assert path + [n.op_type for n in after] == ["Transpose", "DequantizeLinear"]  # NHWC -> NCHW on uint8
    assert not [n for n in graph.node if n.op_type == "Cast"]


@pytest.mark.slow
def test_onnx_int8_gives_the_same_bits_on_the_no_vnni_path(exports, tiny_trained, monkeypatch):
    """Where an x86 CPU lacks VNNI the back end switches onnxruntime to its u8u8 kernels
    (session.x64quantprecision), so u8 x s8 pair sums cannot saturate. Both paths add integers exactly:
    the raw output must be bit-identical to the default path's (here: VNNI on a VNNI CPU)."""
    need("onnx")
    from squeezedet.backends import onnxruntime as ort_backend

    x = resize_for_model(read_image_rgb(calibration.list_images(tiny_trained.data_root, "train.txt")[0]),
                         tiny_trained.config.model.input_size)[None]
    default = load_backend(exports["onnx", "int8"], options=BackendOptions(num_threads=2))
    monkeypatch.setattr(ort_backend, "saturates_u8s8", lambda: True)
    exact = load_backend(exports["onnx", "int8"], options=BackendOptions(num_threads=2))
    assert exact.describe().endswith("(u8u8: no VNNI)")
    np.testing.assert_array_equal(exact(x), default(x))


@pytest.mark.slow
def test_engines_benchmark_prints_one_table_with_the_cpu(exports, tmp_path, capsys):
    """benchmarks/engines.py on exported files: one row per file with min <= median <= max, the baseline
    row at 1.00x, a header naming the CPU, its int8 instructions and the threads, and the same rows in JSON."""
    need("onnx")
    import importlib.util

    path = REPO / "benchmarks" / "engines.py"
    spec = importlib.util.spec_from_file_location("engines", path)
    engines = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(engines)
    files = [str(p) for (_, q), p in exports.items() if q == "int8"]
    argv = [a for f in files for a in ("--model", f)]
    assert engines.main([*argv, "--threads", "1", "--rounds", "3", "--warmup", "1",
                         "--baseline", "onnxruntime:int8", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"CPU: .+ logical CPUs.+; int8 instructions.+; 1 threads; load average", out), out
    rows = [line.strip("| ").split(" | ") for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| model")]
    assert len(rows) == len(files)
    for _, engine, precision, median, low, high, speedup in rows:
        assert precision == "int8" and float(low) <= float(median) <= float(high)
        if engine == "onnxruntime":
            assert speedup == "1.00x"
    saved = json.loads((tmp_path / "engines.json").read_text())
    assert [r["median_ms"] for r in saved["results"]] == pytest.approx([float(r[3]) for r in rows], abs=0.051)
    assert saved["threads"] == 1 and saved["cpu"].startswith("CPU: ")


def test_cpu_flags_decide_the_onnx_int8_kernels(tmp_path):
    """VNNI (AVX-512 or AVX) on x86 keeps onnxruntime's u8 x s8 kernels; an x86 CPU without it gets the
    exact u8u8 path; ARM and CPUs whose flags are unknown are left alone."""
    from squeezedet.backends.onnxruntime import cpu_info, saturates_u8s8

    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7763\nflags\t\t: fpu sse2 avx2 fma\n\n"
                   "processor\t: 1\nmodel name\t: AMD EPYC 7763\nflags\t\t: fpu sse2 avx2 fma\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n\nModel\t\t: Raspberry Pi 5 Model B\n")
    assert cpu_info(str(x86)) == ("AMD EPYC 7763", frozenset({"fpu", "sse2", "avx2", "fma"}))
    assert cpu_info(str(arm)) == ("Raspberry Pi 5 Model B", frozenset({"fp", "asimd", "asimddp"}))
    assert cpu_info(str(tmp_path / "missing"))[1] is None
    avx2 = cpu_info(str(x86))[1]
    assert saturates_u8s8("x86_64", avx2)
    assert not saturates_u8s8("x86_64", avx2 | {"avx512_vnni"})
    assert not saturates_u8s8("AMD64", avx2 | {"avx_vnni"})
    assert not saturates_u8s8("aarch64", frozenset({"asimd"}))


@pytest.mark.slow
def test_export_report_names_format_and_back_end(exports):
    if not exports:
        pytest.skip("neither the [onnx] nor the [openvino] extra is installed")
    report = json.loads((next(iter(exports.values())).parent / REPORT_NAME).read_text())
    for (fmt, q), path in exports.items():
        entry = report[path.name]
        assert entry["format"] == fmt and entry["quantization"] == q
        assert entry["backend"].startswith(ENGINES[fmt][1])
        if q == "fp32":
            assert entry["raw_max_abs_dev"] < 1e-2 and entry["box_max_dev_px"] < 0.01


@pytest.mark.slow
def test_val_cli_on_onnx_and_openvino_ir_gives_the_same_ap(exports, tiny_trained, tmp_path):
    """fp32 on every engine -> the same KITTI AP as Keras (on the overfitted images: a non-trivial AP)."""
    runs = {"keras": ["--weights", str(tiny_trained.weights_path), "--config", str(tiny_trained.config_path)]}
    for fmt in ENGINES:
        if (fmt, "fp32") in exports:
            runs[fmt] = ["--model", str(exports[fmt, "fp32"]), "--threads", "1"]
    if len(runs) == 1:
        pytest.skip("neither the [onnx] nor the [openvino] extra is installed")
    if "openvino" in runs:  # OpenVINO runs the ONNX file too
        runs["openvino-onnx"] = ["--model", str(exports["onnx", "fp32"]), "--backend", "openvino"] \
            if ("onnx", "fp32") in exports else runs["openvino"]
    aps = {}
    for name, args in runs.items():
        out = tmp_path / name
        assert main(["val", *args, "--data", str(tiny_trained.data_root), "--split", "train.txt",
                     "--output", str(out)]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        aps[name] = metrics["classes"]["Car"]["moderate"]["AP_R40"]
    assert aps["keras"] > 10, aps  # 22.5 measured: the overfitted images are found, but not all
    for name, ap in aps.items():
        assert ap == pytest.approx(aps["keras"], abs=0.5), aps


@pytest.mark.slow
def test_daemon_detector_runs_every_back_end(exports, tiny_trained):
    from pipeline.config import ModelConfig
    from pipeline.detector import Detector

    frame = read_image_rgb(calibration.list_images(tiny_trained.data_root, "train.txt")[0])
    results = {}
    for (fmt, q), path in exports.items():
        if q != "fp32":
            continue
        det = Detector.from_config(ModelConfig(path=str(path), num_threads=1, backend=ENGINES[fmt][1]))
        assert det.runtime.startswith(ENGINES[fmt][1]) and det.model_id
        results[fmt] = det.detect(frame)
        assert det.last_inference_ms > 0
    if len(results) < 2:
        pytest.skip("needs both extras")
    a, b = results["onnx"], results["openvino"]
    assert len(a) == len(b) >= 1
    np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)


def test_onnx_model_without_uint8_input_is_a_one_line_error(tmp_path):
    """The contract is uint8 RGB in: a float-input ONNX (e.g. exported elsewhere) is refused at load with the
    file named, not a traceback from onnxruntime's own exception types."""
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from pipeline.detector import Detector
    from squeezedet.core.metadata import ModelMetadata, write_metadata
    from squeezedet.errors import ModelFileError

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 16, 16, 3])
    y = helper.make_tensor_value_info("raw", TensorProto.FLOAT, [1, 1, 1, 6])
    nodes = [helper.make_node("ReduceMean", ["image", "axes"], ["m"], keepdims=1),
             helper.make_node("MatMul", ["m", "w"], ["raw"])]
    inits = [numpy_helper.from_array(np.ones((3, 6), np.float32), "w"),
             numpy_helper.from_array(np.array([1, 2], np.int64), "axes")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    path = tmp_path / "float_in.onnx"
    onnx.save(model, str(path))
    write_metadata(path, ModelMetadata(class_names=["car"], input_width=16, input_height=16, anchor_shapes=[[8.0, 8.0]]))
    with pytest.raises(ModelFileError, match=r"float_in.onnx: input type float32 \(the contract is uint8 RGB"):
        Detector(path, backend="onnxruntime")


@pytest.mark.slow
def test_openvino_layer_profile_counts_every_mac_and_prints_the_floor(exports, tiny_trained, capsys):
    """benchmarks/openvino_layer_profile.py: the MACs it reads from the IR are the Keras model's conv MACs
    (plus the 3x3-channel normalisation at full resolution), and it prints a floor below the measured time."""
    need("openvino")
    import importlib.util

    import keras
    import openvino as ov

    from squeezedet.model import build_model

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "openvino_layer_profile.py"
    spec = importlib.util.spec_from_file_location("openvino_layer_profile", path)
    profile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile)

    model = build_model(tiny_trained.config.model, training_dropout=False)
    expected = []

    def walk(layer):
        for sub in getattr(layer, "layers", []):
            walk(sub)
        if isinstance(layer, keras.layers.Conv2D):
            oh, ow, co = layer.output.shape[1:]
            kh, kw, ci, _ = layer.kernel.shape
            expected.append(oh * ow * kh * kw * ci * co)

    walk(model)
    w, h = tiny_trained.config.model.input_size
    xml = exports["openvino", "int8"]
    macs = profile.conv_macs(ov.Core().read_model(str(xml)))
    assert sorted(macs.values()) == sorted(expected + [h * w * 3 * 3])

    assert profile.main([str(xml), "--threads", "1", "--runs", "3", "--keras-ms", "100"]) == 0
    out = capsys.readouterr().out
    floor = float(re.search(r"would still take ([\d.]+) ms", out).group(1))
    median = float(re.search(r"median ([\d.]+) ms per frame", out).group(1))
    assert 0 < floor <= median
    assert f"{sum(macs.values()) / 1e9:.2f} GMAC" in out
