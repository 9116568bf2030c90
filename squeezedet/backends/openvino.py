"""OpenVINO back end: Intel/AMD CPUs (fastest int8 on x86), Intel GPUs and NPUs, or AUTO.

Reads OpenVINO IR (``.xml`` + ``.bin``) or ONNX directly. Compiled for latency (one frame at a time,
as the daemon feeds it), with a fixed thread count when one is given; ``cache_dir`` keeps compiled
blobs so a GPU/NPU load takes seconds instead of a minute.
"""

from __future__ import annotations

import numpy as np

from squeezedet.backends.base import Backend
from squeezedet.errors import ModelFileError, first_line


class OpenVINOBackend(Backend):
    name = "openvino"

    def __init__(self, path, meta, options):
        import openvino as ov

        super().__init__(path, meta, options)
        core = ov.Core()
        if options.cache_dir:
            core.set_property({"CACHE_DIR": str(options.cache_dir)})
        device = (options.device or "CPU").upper()
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if device == "CPU":
            # On CPUs with bf16 units (Intel AMX / AVX512_BF16) OpenVINO's default computes the float parts in
            # bfloat16: an fp32 export's raw outputs then moved by up to 1.9 from every other engine's.
            config["INFERENCE_PRECISION_HINT"] = "f32"
            if options.num_threads:
                config["INFERENCE_NUM_THREADS"] = int(options.num_threads)
        try:
            model = core.read_model(str(path))
            if meta is not None and model.inputs[0].get_partial_shape().is_dynamic:  # e.g. ONNX with a free batch
                model.reshape({model.inputs[0]: ov.PartialShape([1, meta.input_height, meta.input_width, 3])})
            self.compiled = core.compile_model(model, device, config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError with multi-line reports
            raise ModelFileError(f"{path}: OpenVINO ({device}) rejected the model: {first_line(exc)}") from None
        self.request = self.compiled.create_infer_request()
        self.device = device
        self._version = ov.get_version().split("-")[0]

    @property
    def input_shape(self):
        return tuple(int(d) for d in self.compiled.input(0).get_partial_shape().to_shape())

    @property
    def output_shape(self):
        return tuple(int(d) for d in self.compiled.output(0).get_partial_shape().to_shape())

    @property
    def input_dtype(self):
        return np.dtype(self.compiled.input(0).get_element_type().to_dtype())

    def describe(self) -> str:
        return f"openvino {self._version} {self.device}"

    def run(self, x: np.ndarray) -> np.ndarray:
        self.request.infer({0: x})
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32)
