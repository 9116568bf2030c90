"""Load a .tflite with whichever TFLite runtime the device has, newest first.

Order: ``ai_edge_litert`` (LiteRT) -> ``tflite_runtime`` (old device images) -> ``tf.lite`` (last resort,
only where TensorFlow is installed anyway). Corrupt or empty files become a one-line ModelFileError.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import numpy as np

from squeezedet.errors import ModelFileError, first_line

log = logging.getLogger(__name__)

_RUNTIMES = (
    ("ai_edge_litert.interpreter", "ai_edge_litert"),
    ("tflite_runtime.interpreter", "tflite_runtime"),
)


def _interpreter_module():
    for module, name in _RUNTIMES:
        try:
            return importlib.import_module(module), name
        except ImportError:
            continue
    try:  # pragma: no cover - only on hosts without LiteRT
        import tensorflow as tf

        return tf.lite, "tf.lite"
    except ImportError:
        raise ModelFileError(
            "no TFLite runtime found: pip install ai-edge-litert (or tflite-runtime on old images)"
        ) from None


def runtime_name() -> str:
    return _interpreter_module()[1]


def load_interpreter(model_path, num_threads: int | None = None, delegate_path: str | None = None):
    """A ready (tensors allocated) interpreter for ``model_path``."""
    path = Path(model_path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFileError(f"{path}: not a TFLite flatbuffer (empty or corrupt file, {len(data)} bytes)")
    interp = interpreter_from_bytes(data, num_threads, delegate_path, label=str(path))
    log.debug("loaded %s with %s (threads=%s)", path, runtime_name(), num_threads)
    return interp


def interpreter_from_bytes(data: bytes, num_threads: int | None = None, delegate_path: str | None = None,
                           label: str = "model"):
    """A ready interpreter for flatbuffer ``data`` (``label`` names it in errors)."""
    mod, name = _interpreter_module()
    delegates = None
    if delegate_path:
        try:
            delegates = [mod.load_delegate(delegate_path)]
        except (ValueError, OSError, RuntimeError) as exc:
            raise ModelFileError(f"{delegate_path}: cannot load TFLite delegate ({exc})") from None
    try:
        interp = mod.Interpreter(model_content=data, num_threads=num_threads, experimental_delegates=delegates)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{label}: TFLite runtime ({name}) rejected the model: {first_line(exc)}") from None
    return interp


class TFLiteModel:
    """Thin wrapper: uint8/float image batch in, the model's first output as dequantized float32 out."""

    def __init__(self, model_path, num_threads: int | None = None, delegate_path: str | None = None):
        self.path = Path(model_path)
        self.interpreter = load_interpreter(model_path, num_threads, delegate_path)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.input["shape"])

    @property
    def input_dtype(self):
        return self.input["dtype"]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Shapes are the caller's to check (squeezedet.backends.Backend does, for every engine)."""
        x = np.asarray(batch)
        if x.ndim == 3:
            x = x[None]
        dtype = self.input_dtype
        if x.dtype != dtype:
            scale, zero = self.input.get("quantization", (0.0, 0))
            if np.issubdtype(dtype, np.integer) and scale and not np.issubdtype(x.dtype, np.integer):
                x = np.round(x / scale + zero)
            x = x.astype(dtype)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        if np.issubdtype(out.dtype, np.integer):
            scale, zero = self.output.get("quantization", (0.0, 0))
            if scale:
                return (out.astype(np.float32) - zero) * scale
        return out.astype(np.float32, copy=False)
