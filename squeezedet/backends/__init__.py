"""Inference back ends as plugins: one interface, several engines, picked per device.

Every back end takes the exported contract (uint8 RGB ``[1, H, W, 3]`` in, the raw ConvDet tensor
``[1, gh, gw, A*(C+5)]`` float32 out) and nothing else: decoding stays in the one numpy decoder
(:mod:`squeezedet.core.postprocess`). None of them imports TensorFlow; each engine is imported only
when its back end is loaded, so the edge install without the ``[onnx]`` / ``[openvino]`` extras
never needs them.

==============  ======================  ==========================================================
back end        model files             engine options
==============  ======================  ==========================================================
``litert``      ``.tflite``             threads, TFLite delegate (EdgeTPU, GPU)
``onnxruntime`` ``.onnx``               threads, providers: cpu, cuda, tensorrt (engine cache dir)
``openvino``    ``.xml`` (IR), ``.onnx`` threads, device: CPU, GPU, NPU, AUTO; model cache dir
==============  ======================  ==========================================================

``auto`` picks by file type and what is installed: ``.tflite`` -> litert, ``.xml`` -> openvino,
``.onnx`` -> onnxruntime, else openvino.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import get_args

from squeezedet.backends.base import Backend
from squeezedet.backends.options import BackendName, BackendOptions, EngineConfig
from squeezedet.errors import ConfigError, ModelFileError

#: name -> (module, class, the import that must exist, pip extra that installs it, suffixes it reads)
REGISTRY: dict[str, tuple[str, str, str, str, tuple[str, ...]]] = {
    "litert": ("squeezedet.backends.litert", "LiteRTBackend", "", "edge", (".tflite",)),
    "onnxruntime": ("squeezedet.backends.onnxruntime", "OnnxRuntimeBackend", "onnxruntime", "onnx", (".onnx",)),
    "openvino": ("squeezedet.backends.openvino", "OpenVINOBackend", "openvino", "openvino", (".xml", ".onnx")),
}
BACKEND_NAMES: tuple[str, ...] = get_args(BackendName)  #: "auto" and every key of REGISTRY
#: auto: first installed back end that reads the suffix
AUTO_ORDER = {".tflite": ("litert",), ".xml": ("openvino",), ".onnx": ("onnxruntime", "openvino")}

__all__ = ["BACKEND_NAMES", "Backend", "BackendOptions", "EngineConfig", "available", "load_backend",
           "resolve_backend"]


def available(name: str) -> bool:
    """Is the engine behind back end ``name`` importable here?"""
    module = REGISTRY[name][2]
    return not module or importlib.util.find_spec(module) is not None


def resolve_backend(model_path, backend: str = "auto") -> str:
    """The back end that will run ``model_path``: checked against the file type and the installed engines."""
    suffix = Path(model_path).suffix.lower()
    if backend not in BACKEND_NAMES:
        raise ConfigError(f"unknown back end {backend!r} (choose from {', '.join(BACKEND_NAMES)})")
    if backend == "auto":
        order = AUTO_ORDER.get(suffix)
        if order is None:
            raise ModelFileError(f"{model_path}: unknown model type {suffix!r} (expected .tflite, .onnx or .xml)")
        for name in order:
            if available(name):
                return name
        extras = " or ".join(f"[{REGISTRY[n][3]}]" for n in order)
        raise ModelFileError(f"{model_path}: no engine installed for {suffix} files (pip install \"squeezedet{extras}\")")
    _, _, module, extra, suffixes = REGISTRY[backend]
    if suffix not in suffixes:
        raise ModelFileError(f"{model_path}: back end {backend} reads {' or '.join(suffixes)} files, not {suffix!r}")
    if not available(backend):
        raise ModelFileError(f"back end {backend} needs the {module} package: pip install \"squeezedet[{extra}]\"")
    return backend


def load_backend(model_path, backend: str = "auto", options: BackendOptions | None = None, meta=None,
                 require_metadata: bool = True) -> Backend:
    """A loaded back end for ``model_path`` (its sidecar metadata is read unless given; without
    ``require_metadata`` a missing sidecar is allowed, e.g. to time a bare file)."""
    from squeezedet.core.metadata import read_metadata, sidecar_path

    path = Path(model_path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    name = resolve_backend(path, backend)
    if meta is None and (require_metadata or sidecar_path(path).is_file()):
        meta = read_metadata(path)
    module, cls = REGISTRY[name][:2]
    backend_cls = getattr(importlib.import_module(module), cls)
    return backend_cls(path, meta, options or BackendOptions())
