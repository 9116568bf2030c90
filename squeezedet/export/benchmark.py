"""Latency, size, parameters and MACs of exported models (any back end) and Keras weights, measured the same way.

Latency is per single-image call on a fixed uint8 frame (median and p90 over ``runs`` after
``warmup``), so it is the model alone: no decode, no image I/O. TFLite counts (parameters = elements
of constant tensors, MACs = conv filter size x output size) come from the flatbuffer itself, so they
describe exactly what runs, whatever the quantization. TensorFlow sizes its thread pools once per
process: Keras is timed at the thread count set by :func:`configure_tf_threads`.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from squeezedet.core.io import atomic_write_json, gzip_size
from squeezedet.errors import ModelFileError
from squeezedet.export.flatbuffer import builtin_names, op_name, schema

_CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def tflite_counts(path) -> dict:
    """{"params": elements of constant tensors, "macs": multiply-accumulates of the conv ops}.

    Call it on a file the interpreter has loaded (bench_tflite does): the flatbuffer is not re-validated."""
    model = schema().Model.GetRootAs(Path(path).read_bytes(), 0)
    graph = model.Subgraphs(0)
    names = builtin_names()
    params = 0
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        buf = model.Buffers(tensor.Buffer())
        if buf.DataLength() or buf.Size():
            params += int(np.prod(tensor.ShapeAsNumpy())) if tensor.ShapeLength() else 1
    macs = 0
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = op_name(names, code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if name in _CONV_OPS:
            kh, kw, cin = graph.Tensors(op.Inputs(1)).ShapeAsNumpy()[1:]
            out = graph.Tensors(op.Outputs(0)).ShapeAsNumpy()
            macs += int(np.prod(out)) * int(kh * kw) * (int(cin) if name == "CONV_2D" else 1)
    return {"params": params, "macs": macs}


def time_calls(fn: Callable[[], object], runs: int, warmup: int) -> np.ndarray:
    """Wall-clock milliseconds of ``runs`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        times[i] = (time.perf_counter() - t0) * 1000.0
    return times


def _summary(times: np.ndarray) -> dict:
    median = float(np.median(times))
    return {"median_ms": median, "p90_ms": float(np.percentile(times, 90)), "fps": 1000.0 / median}


def _frame(shape) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)


def bench_tflite(path, threads: int, runs: int = 50, warmup: int = 5) -> dict:
    from squeezedet.core.metadata import read_metadata
    from squeezedet.core.runtime import TFLiteModel, runtime_name

    path = Path(path)
    model = TFLiteModel(path, num_threads=threads)
    try:
        quantization = read_metadata(path).quantization
    except ModelFileError:
        quantization = "?"
    x = _frame(model.input_shape)
    times = time_calls(lambda: model(x), runs, warmup)
    return {
        "model": path.name,
        "format": f"tflite {quantization}",
        "runtime": runtime_name(),
        "threads": threads,
        **_summary(times),
        "size_bytes": path.stat().st_size,
        "gzip_bytes": gzip_size(path),
        **tflite_counts(path),
    }


def model_row(backend, threads: int) -> dict:
    """The descriptive part of a result row for a loaded back end (timings are added by the caller)."""
    from squeezedet.core.metadata import MODEL_FORMATS
    from squeezedet.export.exporter import model_bytes

    path, meta = backend.path, backend.meta
    files = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else [])
    counts = tflite_counts(path) if path.suffix == ".tflite" else {"params": None, "macs": None}
    fmt = f"{meta.model_format} {meta.quantization}" if meta is not None else f"{MODEL_FORMATS[path.suffix]} ?"
    return {
        "model": path.name,
        "format": fmt,
        "backend": backend.name,
        "runtime": backend.describe(),
        "threads": threads,
        "size_bytes": model_bytes(path),
        "gzip_bytes": sum(gzip_size(f) for f in files),
        **counts,
    }


def bench_model(path, threads: int, runs: int = 50, warmup: int = 5, backend: str = "auto", options=None) -> dict:
    """Latency of any exported model on the back end that ``backend`` resolves to."""
    from dataclasses import replace

    from squeezedet.backends import BackendOptions, load_backend

    options = replace(options or BackendOptions(), num_threads=threads)
    engine = load_backend(path, backend, options, require_metadata=False)
    x = _frame(engine.input_shape)
    times = time_calls(lambda: engine(x), runs, warmup)
    return {**model_row(engine, threads), **_summary(times)}


def configure_tf_threads(threads: int) -> int:
    """Size TensorFlow's intra-op pool (only possible before TF runs anything); returns the size in use."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised: keep what it has
    return tf.config.threading.get_intra_op_parallelism_threads()


def bench_keras(model_path, cfg=None, runs: int = 50, warmup: int = 5) -> dict:
    """Keras latency: ``.weights.h5`` + its ``cfg``, or a whole saved ``.keras`` model (no cfg needed)."""
    import keras
    import tensorflow as tf

    from squeezedet.export.graph import load_inference_model
    from squeezedet.model.squeezedet import count_macs, count_params

    model_path = Path(model_path)
    if model_path.suffix == ".keras":
        try:
            model = keras.saving.load_model(model_path, compile=False)
        except Exception as exc:  # noqa: BLE001 - Keras raises ValueError, OSError, TypeError...
            raise ModelFileError(f"{model_path}: cannot load the Keras model ({exc})") from None
        shape = tuple(model.inputs[0].shape[1:])
        if None in shape:
            raise ModelFileError(f"{model_path}: input shape {shape} is not fixed; benchmark needs a fixed input size")
    else:
        model = load_inference_model(cfg.model, model_path)
        shape = (cfg.model.input_height, cfg.model.input_width, 3)
    forward = tf.function(lambda x: model(x, training=False))
    x = tf.constant(_frame((1, *shape)))
    times = time_calls(lambda: forward(x).numpy(), runs, max(warmup, 1))
    return {
        "model": model_path.name,
        "format": "keras fp32",
        "runtime": f"tensorflow {tf.__version__} / keras {keras.__version__}",
        "threads": tf.config.threading.get_intra_op_parallelism_threads() or "all",
        **_summary(times),
        "size_bytes": model_path.stat().st_size,
        "gzip_bytes": gzip_size(model_path),
        "params": count_params(model),
        "macs": count_macs(model),
    }


def host_info() -> dict:
    import os

    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version()}


def markdown_table(rows: Sequence[dict]) -> str:
    head = "| model | format | back end | threads | median ms | p90 ms | FPS | size MB | gzip MB | params | GMACs |"
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        params = f"{r['params']:,}" if r.get("params") is not None else "-"
        macs = f"{r['macs'] / 1e9:.2f}" if r.get("macs") is not None else "-"
        lines.append(
            f"| {r['model']} | {r['format']} | {r.get('backend', 'keras')} | {r['threads']} | {r['median_ms']:.1f} | "
            f"{r['p90_ms']:.1f} | {r['fps']:.1f} | {r['size_bytes'] / 1e6:.2f} | {r['gzip_bytes'] / 1e6:.2f} | "
            f"{params} | {macs} |"
        )
    return "\n".join(lines)


def write_results(path, rows: Sequence[dict], **extra) -> Path:
    return atomic_write_json(path, {"host": host_info(), **extra, "results": list(rows)})
