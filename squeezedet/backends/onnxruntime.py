"""ONNX Runtime back end: CPU anywhere, CUDA or TensorRT on NVIDIA (Jetson) with an engine cache.

Providers are asked for in order of preference (``tensorrt``, ``cuda``, ``cpu``); ones this build of
onnxruntime lacks are skipped with a warning, and CPU is always last, so a model never fails to load
only because an accelerator is missing. TensorRT builds its engine on first load (minutes on a
Jetson) and reuses it from ``cache_dir`` afterwards.

int8 files carry int8 weights (squeezedet.export.onnx). On x86 CPUs without VNNI onnxruntime would
multiply them with uint8 activations through 16-bit pair sums that saturate; there the back end turns on
onnxruntime's own exact path (``session.x64quantprecision``: weights shifted to uint8 when the session
is built, u8u8 kernels). Not on VNNI CPUs, where the same switch costs about 3x and gains nothing.
"""

from __future__ import annotations

import functools
import logging
import platform
from pathlib import Path

import numpy as np

from squeezedet.backends.base import Backend
from squeezedet.errors import ConfigError, ModelFileError, first_line

log = logging.getLogger(__name__)

ONNX_TYPES = {"tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(float)": np.float32,
              "tensor(float16)": np.float16}
#: /proc/cpuinfo flags of x86 int8 dot products (u8 x s8 summed in 32 bits, nothing saturates)
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni")
X86 = ("x86_64", "amd64", "i686", "i386", "x86")
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


@functools.lru_cache(maxsize=4)
def cpu_info(path: str = "/proc/cpuinfo") -> tuple[str, frozenset[str] | None]:
    """CPU model name and feature flags (x86 ``flags``, ARM ``Features``) from /proc/cpuinfo; the flags
    are None where the file cannot be read (not Linux)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return platform.processor() or platform.machine(), None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags", fields.get("Features"))
    name = fields.get("model name") or fields.get("Model") or platform.machine()
    return name, frozenset(flags.split()) if flags is not None else None


def saturates_u8s8(machine: str | None = None, flags: frozenset[str] | None = None) -> bool:
    """Does onnxruntime's u8 x s8 int8 kernel saturate here: an x86 CPU whose flags show no VNNI.
    False where the flags are unknown (not Linux) or the CPU is not x86 (ARM has its own kernels)."""
    if (machine or platform.machine()).lower() not in X86:
        return False
    flags = cpu_info()[1] if flags is None else flags
    return flags is not None and not any(f in flags for f in INT8_DOT_FLAGS)


def provider_list(names, cache_dir: str | None, fp16: bool, available) -> list:
    """onnxruntime's providers argument for our short names, unavailable ones dropped, CPU last."""
    out = []
    for short in names:
        if short not in PROVIDERS:
            raise ConfigError(f"unknown onnxruntime provider {short!r} (choose from {', '.join(PROVIDERS)})")
        full = PROVIDERS[short]
        if full not in available:
            log.warning("onnxruntime provider %s is not available in this build (have %s); skipping it",
                        full, ", ".join(available))
            continue
        if short == "tensorrt":
            opts = {"trt_fp16_enable": bool(fp16)}
            if cache_dir:
                Path(cache_dir).mkdir(parents=True, exist_ok=True)
                opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir),
                            trt_timing_cache_enable=True, trt_timing_cache_path=str(cache_dir))
            out.append((full, opts))
        elif full not in [p if isinstance(p, str) else p[0] for p in out]:
            out.append(full)
    if PROVIDERS["cpu"] not in out:
        out.append(PROVIDERS["cpu"])
    return out


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path, meta, options):
        import onnxruntime as ort

        super().__init__(path, meta, options)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        if options.num_threads:
            so.intra_op_num_threads = int(options.num_threads)
        # Busy-waiting workers would steal the core the video decoder needs between frames.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        self.exact_u8 = saturates_u8s8()
        if self.exact_u8:
            so.add_session_config_entry("session.x64quantprecision", "1")
            log.debug("no VNNI on this CPU: int8 convolutions use onnxruntime's exact u8u8 kernels")
        providers = provider_list(options.providers, options.cache_dir, options.fp16, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail / InvalidProtobuf / RuntimeException
            raise ModelFileError(f"{path}: onnxruntime rejected the model: {first_line(exc)}") from None
        self._input = self.session.get_inputs()[0]
        self._output = self.session.get_outputs()[0]
        self._version = ort.__version__

    @property
    def input_shape(self):
        return tuple(d if isinstance(d, int) else -1 for d in self._input.shape)

    @property
    def output_shape(self):
        return tuple(d if isinstance(d, int) else -1 for d in self._output.shape)

    @property
    def input_dtype(self):
        return np.dtype(ONNX_TYPES[self._input.type])

    def describe(self) -> str:
        used = ",".join(p.replace("ExecutionProvider", "") for p in self.session.get_providers())
        return f"onnxruntime {self._version} {used}" + (" (u8u8: no VNNI)" if self.exact_u8 else "")

    def run(self, x: np.ndarray) -> np.ndarray:
        try:
            out = self.session.run([self._output.name], {self._input.name: x})[0]
        except Exception as exc:  # noqa: BLE001 - ORT's own Fail / InvalidArgument are not RuntimeErrors
            raise RuntimeError(first_line(exc)) from None
        return out.astype(np.float32, copy=False)
