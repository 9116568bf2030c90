"""TF1 checkpoints of the original implementation (``model.ckpt-N`` as the original repository ships
them): variables ``conv1/kernels``, ``fire2/squeeze1x1/kernels``, ..., ``conv12/biases``. A checkpoint stores
no geometry, so input size, padding and anchors come from ``--config`` or flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from squeezedet.errors import ModelFileError, first_line
from squeezedet.importers.base import SourceWeights
from squeezedet.importers.layout import ORIGINAL_LAYERS


def _prefix(path: Path) -> str:
    """A checkpoint folder (its 'checkpoint' file names the newest), a prefix, or the .index file."""
    import tensorflow as tf

    if path.is_dir():
        latest = tf.train.latest_checkpoint(str(path))
        if latest is None:
            indexes = sorted(path.glob("*.index"))
            if not indexes:
                raise ModelFileError(f"{path}: no checkpoint in this folder")
            latest = str(indexes[-1].with_suffix(""))
        return latest
    return str(path.with_suffix("")) if path.suffix == ".index" else str(path)


def read_tf1_checkpoint(path: Path) -> SourceWeights:
    import tensorflow as tf

    prefix = _prefix(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (ValueError, tf.errors.OpError) as exc:
        raise ModelFileError(f"{path}: not a readable TensorFlow checkpoint ({first_line(exc)})") from None
    names = reader.get_variable_to_shape_map()
    params, missing = {}, []
    for name in ORIGINAL_LAYERS:
        k, b = f"{name}/kernels", f"{name}/biases"
        if k not in names or b not in names:
            missing.append(k if k not in names else b)
            continue
        params[name] = (np.asarray(reader.get_tensor(k), np.float32), np.asarray(reader.get_tensor(b), np.float32))
    if missing:
        raise ModelFileError(f"{path}: not a SqueezeDet checkpoint: no variable {missing[0]}"
                             + (f" (+{len(missing) - 1} more missing)" if len(missing) > 1 else ""))
    source = SourceWeights(path=Path(prefix), format="tf1-checkpoint", params=params)
    source.check_complete()
    source.geometry = {"convdet_kernel": int(params["conv12"][0].shape[0])}
    return source
