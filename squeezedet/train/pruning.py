"""Magnitude pruning while fine-tuning (Zhu & Gupta 2017 schedule; Deep Compression's observation that
the first conv is the most sensitive, so conv1 stays dense).

Between ``begin_step`` and ``end_step`` each pruned conv kernel is made ``sparsity(step)`` sparse by
zeroing its smallest-magnitude weights, with ``sparsity(step) = final * (1 - (1 - progress)^3)``:
fast early, while the network can still recover, gentle near the end. Biases are never pruned. The
masks are re-applied after every training batch, so momentum cannot revive a pruned weight.

Zeros do not make a dense .tflite smaller or faster; they make it compress (gzip/zip of the model for
download or OTA updates), which :func:`squeezedet.export.benchmark.gzip_size` measures.
"""

from __future__ import annotations

import logging

import keras
import numpy as np

from squeezedet.core.io import gzip_size

log = logging.getLogger(__name__)

__all__ = ["MagnitudePruning", "gzip_size", "polynomial_sparsity", "prune_by_magnitude", "sparsity_report"]


def polynomial_sparsity(step: int, final: float, begin: int, end: int) -> float:
    """Target sparsity at ``step``: 0 before ``begin``, ``final`` from ``end`` on, cubic in between."""
    if step < begin:
        return 0.0
    progress = min(1.0, (step - begin) / max(end - begin, 1))
    return final * (1.0 - (1.0 - progress) ** 3)


def _conv_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _conv_layers(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            yield layer


class MagnitudePruning(keras.callbacks.Callback):
    """Prune conv kernels (all but ``keep_dense``) of the model being fitted; for a Distiller, its student."""

    def __init__(self, final_sparsity: float, begin_step: int = 0, end_step: int = 1000, frequency: int = 50,
                 keep_dense: tuple[str, ...] = ("conv1",)):
        super().__init__()
        if not 0.0 <= final_sparsity < 1.0:
            raise ValueError(f"final_sparsity must be in [0, 1), got {final_sparsity}")
        if end_step <= begin_step:
            raise ValueError(f"end_step ({end_step}) must be after begin_step ({begin_step})")
        self.final_sparsity = final_sparsity
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = max(1, frequency)
        self.keep_dense = tuple(keep_dense)
        self.masks: dict[str, np.ndarray] = {}  # bool, True = kept
        self._multipliers: dict[str, np.ndarray] = {}  # the same as float32, applied every batch
        self._layers: dict[str, keras.layers.Conv2D] = {}
        self._step = 0

    @classmethod
    def from_config(cls, train_cfg) -> MagnitudePruning:
        """From ``cfg.train`` (prune_final_sparsity, prune_begin_step, prune_end_step)."""
        return cls(train_cfg.prune_final_sparsity, train_cfg.prune_begin_step, train_cfg.prune_end_step)

    def sparsity_at(self, step: int) -> float:
        return polynomial_sparsity(step, self.final_sparsity, self.begin_step, self.end_step)

    def on_train_begin(self, logs=None):
        target = getattr(self.model, "student", self.model)
        # frozen layers (train.freeze) stay as loaded: pruning them would change what the user fixed
        self._layers = {conv.name: conv for conv in _conv_layers(target)
                        if conv.name not in self.keep_dense and conv.trainable}
        # Existing zeros count as pruned, so a run resumed from a pruned checkpoint keeps its masks.
        self.masks = {name: keras.ops.convert_to_numpy(conv.kernel) != 0 for name, conv in self._layers.items()}
        self._multipliers = {name: m.astype(np.float32) for name, m in self.masks.items()}
        self._step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        log.info("magnitude pruning of %d conv layers to %.0f%% between steps %d and %d",
                 len(self._layers), 100 * self.final_sparsity, self.begin_step, self.end_step)

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step < self.begin_step:
            return
        due = (self._step - self.begin_step) % self.frequency == 0 or self._step == self.end_step
        if due and self._step <= self.end_step:
            self._update_masks(self.sparsity_at(self._step))
        self._apply_masks()

    def _update_masks(self, sparsity: float) -> None:
        for name, layer in self._layers.items():
            magnitude = np.abs(keras.ops.convert_to_numpy(layer.kernel)) * self.masks[name]
            self.masks[name] = keep_largest(magnitude, sparsity) & self.masks[name]
            self._multipliers[name] = self.masks[name].astype(np.float32)

    def _apply_masks(self) -> None:
        for name, layer in self._layers.items():
            layer.kernel.assign(layer.kernel * self._multipliers[name])


def keep_largest(magnitude: np.ndarray, sparsity: float) -> np.ndarray:
    """Boolean mask that drops the ``sparsity`` fraction of smallest entries (ties: first ones first)."""
    mask = np.ones(magnitude.size, bool)
    mask[np.argsort(magnitude, axis=None, kind="stable")[: round(sparsity * magnitude.size)]] = False
    return mask.reshape(magnitude.shape)


def prune_by_magnitude(model: keras.Model, sparsity: float, keep_dense: tuple[str, ...] = ("conv1",)) -> None:
    """One-shot: zero the ``sparsity`` smallest-magnitude weights of each conv kernel (not ``keep_dense``).

    No fine-tuning, so accuracy drops; without training it shows what pruning does to the file sizes."""
    for layer in _conv_layers(model):
        if layer.name not in keep_dense:
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            layer.kernel.assign(kernel * keep_largest(np.abs(kernel), sparsity))


def sparsity_report(model: keras.Model) -> dict[str, float]:
    """Fraction of exactly-zero weights in each conv kernel."""
    return {
        layer.name: float(np.mean(keras.ops.convert_to_numpy(layer.kernel) == 0)) for layer in _conv_layers(model)
    }
