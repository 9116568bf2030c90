"""Start training from a trained detector ("don't be a hero"), and keep chosen layers fixed.

``--init-weights`` takes a run folder (``model.weights.h5`` or ``best.weights.h5`` + ``config.yaml``, e.g. the
output of ``squeezedet import``) or a ``.weights.h5`` with its config beside it. The source model is built
with its own geometry, loaded, and copied layer by layer into the new model: convolution weights do not
depend on the input size, so a KITTI model can be fine-tuned at a camera's 16:9 input. The ConvDet head is
copied only when classes and anchors match; otherwise it starts fresh (one notice says so).
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path

import numpy as np

from squeezedet.errors import ConfigError, ModelFileError

log = logging.getLogger(__name__)

HEAD = "convdet"
_WEIGHT_FILES = ("model.weights.h5", "best.weights.h5", "last.weights.h5")


def resolve_init_weights(path) -> Path:
    """A folder -> the weights file in it; a file -> itself."""
    path = Path(path)
    if path.is_dir():
        for name in _WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise ModelFileError(f"{path}: no {', '.join(_WEIGHT_FILES)} in this folder")
    if not path.is_file():
        raise ModelFileError(f"{path}: init weights not found")
    return path


def init_from_trained(model, cfg, path) -> dict:
    """Copy every layer of the trained model at ``path`` into ``model``; returns what was copied/skipped."""
    from squeezedet.inference import config_for_weights, load_weights
    from squeezedet.model import build_model

    weights = resolve_init_weights(path)
    src_cfg = config_for_weights(weights)
    source = build_model(src_cfg.model, training_dropout=False)
    load_weights(source, weights)
    same_head = (list(src_cfg.model.classes) == list(cfg.model.classes)
                 and np.allclose(np.asarray(src_cfg.model.anchor_shapes), np.asarray(cfg.model.anchor_shapes))
                 if len(src_cfg.model.anchor_shapes) == len(cfg.model.anchor_shapes) else False)
    if src_cfg.model.padding != cfg.model.padding:
        log.warning("init-weights: %s was trained with %s padding, this model uses %s",
                    weights, src_cfg.model.padding, cfg.model.padding)
    copied, skipped = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name == HEAD and not same_head:
            skipped.append(layer.name)
            continue
        try:
            src = source.get_layer(layer.name)
        except ValueError:
            skipped.append(layer.name)
            continue
        values = src.get_weights()
        if [v.shape for v in values] != [tuple(w.shape) for w in layer.weights]:
            raise ModelFileError(f"{weights}: layer {layer.name} has shapes {[v.shape for v in values]}, "
                                 f"this model expects {[tuple(w.shape) for w in layer.weights]}")
        layer.set_weights(values)
        copied.append(layer.name)
    if HEAD in skipped:
        why = (f"classes {','.join(src_cfg.model.classes)} -> {','.join(cfg.model.classes)}"
               if list(src_cfg.model.classes) != list(cfg.model.classes) else "anchor shapes differ")
        log.warning("init-weights: %s, so the ConvDet head is re-initialised (everything else is loaded)", why)
    log.info("init-weights: %d layers from %s%s", len(copied), weights,
             f"; not loaded: {', '.join(skipped)}" if skipped else "")
    return {"weights": str(weights), "copied": copied, "skipped": skipped, "head_loaded": HEAD in copied}


def apply_freeze(model, patterns: list[str]) -> list[str]:
    """Mark layers whose names match any pattern (fnmatch, e.g. ``fire2_*``) as not trainable."""
    if not patterns:
        return []
    names = [layer.name for layer in model.layers if layer.weights]
    frozen = []
    for pattern in patterns:
        hits = fnmatch.filter(names, pattern)
        if not hits:
            raise ConfigError(f"train.freeze: {pattern!r} matches no layer with weights (layers: {', '.join(names[:6])}, ...)")
        frozen.extend(h for h in hits if h not in frozen)
    for name in frozen:
        model.get_layer(name).trainable = False
    log.info("frozen %d layers: %s", len(frozen), ", ".join(frozen))
    return frozen
