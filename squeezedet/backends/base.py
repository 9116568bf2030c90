"""What every inference back end provides (the options they share: squeezedet.backends.options)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from squeezedet.backends.options import BackendOptions
from squeezedet.errors import ModelFileError, first_line


class Backend:
    """One loaded model. ``backend(batch)`` runs a uint8 ``[1, H, W, 3]`` batch and returns the raw
    ConvDet tensor as float32. Not thread-safe: one caller at a time (the daemon runs one per camera
    thread or serialises calls)."""

    name = "?"

    def __init__(self, path: Path, meta, options: BackendOptions):
        self.path, self.meta, self.options = Path(path), meta, options

    @property
    def input_shape(self) -> tuple[int, ...]:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def output_shape(self) -> tuple[int, ...]:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def input_dtype(self) -> np.dtype:
        """The model input's element type (uint8 for every export of this project)."""
        return np.dtype(np.uint8)

    def describe(self) -> str:
        """Engine, version and device, for logs and stats (e.g. ``openvino 2026.4.1 CPU``)."""
        return self.name

    def run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """The one input check for every engine (the engines' own wrappers leave it to this)."""
        x = np.asarray(batch)
        if x.ndim == 3:
            x = x[None]
        if tuple(x.shape) != self.input_shape:
            raise ValueError(f"input shape {tuple(x.shape)} does not match model input {self.input_shape}")
        if x.dtype != np.uint8:
            x = np.clip(np.round(x), 0, 255).astype(np.uint8)
        return self.run(np.ascontiguousarray(x))

    def check_shapes(self) -> None:
        """Input and output shapes agree with the metadata (a model and a sidecar of different models)."""
        meta = self.meta
        want_in = (1, meta.input_height, meta.input_width, 3)
        try:
            dtype = np.dtype(self.input_dtype)
        except (KeyError, TypeError) as exc:
            raise ModelFileError(f"{self.path}: unsupported input type ({first_line(exc)}); the contract is uint8 RGB") from None
        if dtype != np.uint8:
            raise ModelFileError(f"{self.path}: input type {dtype} (the contract is uint8 RGB, "
                                 "normalisation inside the graph: export with squeezedet export)")
        if self.input_shape != want_in:
            raise ModelFileError(f"{self.path}: input shape {self.input_shape} does not match metadata {want_in}")
        gw, gh = meta.grid_size
        want_out = (1, gh, gw, len(meta.anchor_shapes) * (meta.num_classes + 5))
        if self.output_shape != want_out:
            raise ModelFileError(
                f"{self.path}: output shape {self.output_shape} does not match metadata {want_out} "
                f"({len(meta.anchor_shapes)} anchors, {meta.num_classes} classes)"
            )
