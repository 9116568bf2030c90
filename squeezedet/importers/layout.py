"""The original implementation's layer names (src/nets/squeezeDet.py) and their Keras counterparts.

Every format names the same 22 convolutions: ``conv1``, ``fireN/{squeeze1x1,expand1x1,expand3x3}`` for
N = 2..11 and ``conv12`` (the ConvDet layer). Kernels are held as HWIO float32 (TensorFlow's layout).
"""

from __future__ import annotations

FIRES = tuple(f"fire{i}" for i in range(2, 12))
FIRE_PARTS = ("squeeze1x1", "expand1x1", "expand3x3")
#: Original names in network order.
ORIGINAL_LAYERS: tuple[str, ...] = ("conv1", *(f"{f}/{p}" for f in FIRES for p in FIRE_PARTS), "conv12")

#: The original class order (labels.txt of the authors' demo: car, ped, bike) in our KITTI names.
KITTI_CLASSES = ["car", "pedestrian", "cyclist"]


def keras_name(original: str) -> str:
    """``fire2/squeeze1x1`` -> ``fire2_squeeze1x1``; ``conv12`` -> ``convdet``."""
    return "convdet" if original == "conv12" else original.replace("/", "_")
