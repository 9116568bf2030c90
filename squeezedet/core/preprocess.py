"""The one image preprocessing used at training, export calibration, evaluation and on the device.

The whole frame is resized to the model input (no centre crop, aspect ratio not kept, as SqueezeDet
was trained); pixel normalisation lives inside the model graph, so images stay uint8 RGB here.

The resize is bilinear in both directions: it is what the SqueezeDet authors trained and evaluated their
published KITTI weights with (``cv2.resize`` at its default), and it costs a fifth of INTER_AREA on the
device (1280x720 -> 960x288: 0.9 ms against 4.4 ms on one x86 core; docs/edge.md#throughput), which the
daemon pays on every frame. Measured on the sample val split, the bundled model's Car AP moved by less
than the split's noise when it was switched (MODEL_CARD.md has the numbers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from squeezedet.errors import DataError

#: Still-image files that OpenCV decodes: what folder sources and `predict` pick up.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def resize_for_model(image_rgb: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> uint8 RGB [input_h, input_w, 3]."""
    import cv2

    w, h = input_size
    if image_rgb.shape[1] == w and image_rgb.shape[0] == h:
        return np.ascontiguousarray(image_rgb, dtype=np.uint8)
    return cv2.resize(image_rgb, (w, h), interpolation=cv2.INTER_LINEAR)


def read_image_rgb(path) -> np.ndarray:
    """Read an image file as uint8 RGB; a missing or undecodable file is a DataError naming it."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image not found")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{path}: cannot decode image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
