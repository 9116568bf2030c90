"""LiteRT (TFLite) back end: the default, and the one the Raspberry Pi runs."""

from __future__ import annotations

import numpy as np

from squeezedet.backends.base import Backend
from squeezedet.core.runtime import TFLiteModel, runtime_name


class LiteRTBackend(Backend):
    name = "litert"

    def __init__(self, path, meta, options):
        super().__init__(path, meta, options)
        self.model = TFLiteModel(path, num_threads=options.num_threads, delegate_path=options.delegate)

    @property
    def input_shape(self):
        return self.model.input_shape

    @property
    def output_shape(self):
        return tuple(int(v) for v in self.model.output["shape"])

    @property
    def input_dtype(self):
        return np.dtype(self.model.input_dtype)

    def describe(self) -> str:
        return runtime_name()

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.model(x)
