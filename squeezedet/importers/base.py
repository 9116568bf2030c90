"""What every reader returns: float weights in the original naming, plus the geometry the source states.

The readers (tf1_graph, tf1_checkpoint, raw_float32) build on this module only; the dispatcher that picks
one (:mod:`squeezedet.importers.source`) imports them on demand, never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from squeezedet.errors import ModelFileError
from squeezedet.importers.layout import ORIGINAL_LAYERS


@dataclass
class SourceWeights:
    """Float weights in the original naming plus whatever geometry the source itself records.

    ``geometry`` holds only what the file states (input_width/input_height, padding, convdet_kernel,
    anchor_shapes, anchor_centres as two arrays); the rest comes from flags or a config.
    ``run`` executes the source itself (a GraphDef in TensorFlow) on BGR-minus-means float images and
    returns the raw ConvDet tensor; None when the format has no executable form.
    """

    path: Path
    format: str
    params: dict[str, tuple[np.ndarray, np.ndarray]]  #: original name -> (kernel HWIO, bias)
    geometry: dict = field(default_factory=dict)
    quantized: bool = False  #: weights stored in 8 bits (dequantized here)
    run: Callable[[np.ndarray], np.ndarray] | None = None
    run_8bit: bool = False  #: ``run`` quantizes its activations (compared by correlation, not 1e-3)

    def inherit(self, like: SourceWeights) -> None:
        """Take the geometry this source lacks from ``like`` (a graph of the same model, e.g. the 8-bit
        graph of a float parameter set), and, when this source cannot run, hold it to ``like``'s run."""
        for key, value in like.geometry.items():
            self.geometry.setdefault(key, value)
        if self.run is None:
            self.run, self.run_8bit = like.run, like.run_8bit

    def check_complete(self) -> None:
        missing = [n for n in ORIGINAL_LAYERS if n not in self.params]
        if missing:
            raise ModelFileError(
                f"{self.path}: not a SqueezeDet {self.format}: missing {', '.join(missing[:4])}"
                + (f" (+{len(missing) - 4} more)" if len(missing) > 4 else "")
            )
        for name in ORIGINAL_LAYERS:
            kernel, bias = self.params[name]
            if kernel.ndim != 4 or bias.shape != (kernel.shape[-1],):
                raise ModelFileError(f"{self.path}: {name}: kernel {kernel.shape} and bias {bias.shape} do not fit")
