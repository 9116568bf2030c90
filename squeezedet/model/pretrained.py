"""Initialise the backbone from a local ImageNet SqueezeNet v1.1 HDF5 file (never downloaded).

The file holds conv1 and fire2..fire9 in the Keras 2 layout, datasets named like
``fire2/squeeze1x1/fire2/squeeze1x1_3/kernel:0``; its input convention (BGR minus ImageNet means) is
what :class:`squeezedet.model.layers.ImageNormalization` produces, so the weights apply unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from squeezedet.errors import ModelFileError

log = logging.getLogger(__name__)


def read_squeezenet_h5(path) -> dict[str, dict[str, np.ndarray]]:
    """{our layer name: {"kernel": array, "bias": array}} from a SqueezeNet v1.1 notop file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: pretrained backbone weights not found (set model.pretrained_backbone)")
    weights: dict[str, dict[str, np.ndarray]] = {}
    try:
        with h5py.File(path, "r") as fh:
            root = fh["model_weights"] if "model_weights" in fh else fh

            def visit(name, obj):
                if not isinstance(obj, h5py.Dataset):
                    return
                parts = name.split("/")
                kind = parts[-1].split(":")[0]
                if kind not in ("kernel", "bias"):
                    return
                block = parts[0]
                layer = block if block.startswith("conv") else f"{block}_{parts[1]}"
                weights.setdefault(layer, {})[kind] = np.asarray(obj)

            root.visititems(visit)
    except OSError as exc:
        raise ModelFileError(f"{path}: not a readable HDF5 weights file ({exc})") from None
    if not weights:
        raise ModelFileError(f"{path}: no conv kernels found (expected SqueezeNet v1.1 layout conv1, fire2..fire9)")
    return weights


def load_pretrained_backbone(model, path) -> list[str]:
    """Assign every layer of the file to the model layer of the same name; shapes must match exactly."""
    weights = read_squeezenet_h5(path)
    assigned = []
    for layer_name, arrays in sorted(weights.items()):
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            raise ModelFileError(
                f"{path}: layer {layer_name!r} has no counterpart in model {model.name!r} "
                "(SqueezeNet v1.1 weights fit architecture 'squeezedet' only)"
            ) from None
        if set(arrays) != {"kernel", "bias"}:
            raise ModelFileError(f"{path}: layer {layer_name!r} lacks kernel or bias")
        for var, kind in ((layer.kernel, "kernel"), (layer.bias, "bias")):
            if tuple(var.shape) != arrays[kind].shape:
                raise ModelFileError(
                    f"{path}: {layer_name}/{kind} has shape {arrays[kind].shape}, model expects {tuple(var.shape)}"
                )
        layer.set_weights([arrays["kernel"], arrays["bias"]])
        assigned.append(layer_name)
    log.info("loaded pretrained backbone from %s: %d layers (%s .. %s)", path, len(assigned), assigned[0], assigned[-1])
    return assigned
