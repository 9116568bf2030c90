"""Anchor grid of the ConvDet layer: one set of anchor shapes at every cell of the output grid.

Centres follow the original SqueezeDet: along an axis with G cells and image size S the centres are
``i * S / (G + 1)`` for ``i = 1..G`` (not cell centres), so the grid spans the image symmetrically.
Ordering is (row, column, anchor), matching a reshape of the ConvDet tensor [H, W, A*k] -> [H*W*A, k].
"""

from __future__ import annotations

import math

import numpy as np

# The paper's 9 KITTI anchor shapes (width, height) in pixels for a 1248x384 input.
DEFAULT_KITTI_ANCHOR_SHAPES: tuple[tuple[float, float], ...] = (
    (36.0, 37.0),
    (366.0, 174.0),
    (115.0, 59.0),
    (162.0, 87.0),
    (38.0, 90.0),
    (258.0, 173.0),
    (224.0, 108.0),
    (78.0, 170.0),
    (72.0, 43.0),
)

#: Total downsampling of the SqueezeDet backbone (conv1 s2 + three 2x pools).
STRIDE = 16
#: Stride-2 stages of the backbone: conv1 and the three 3x3 max-pools.
_POOLS = 3


def _out_len(size: int, kernel: int, padding: str) -> int:
    """Output length of one stride-2 conv/pool (TensorFlow's SAME/VALID arithmetic)."""
    return math.ceil(size / 2) if padding == "same" else (size - kernel) // 2 + 1


def grid_size(input_width: int, input_height: int, padding: str = "same", conv1_kernel: int = 3) -> tuple[int, int]:
    """(grid_width, grid_height) of the ConvDet output.

    SAME padding rounds up (ceil(size / 16)); VALID, as the original 1242x375 release used for conv1
    and the pools, drops the borders: 1242x375 -> 76x22 where SAME gives 78x24.
    """
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
    dims = []
    for size in (input_width, input_height):
        size = _out_len(size, conv1_kernel, padding)
        for _ in range(_POOLS):
            size = _out_len(size, 3, padding)
        if size < 1:
            raise ValueError(f"input {input_width}x{input_height} is too small for {padding} padding")
        dims.append(size)
    return dims[0], dims[1]


def scale_anchor_shapes(
    shapes, from_size: tuple[int, int], to_size: tuple[int, int]
) -> np.ndarray:
    """Rescale (w, h) anchor shapes designed for one input size (W, H) to another."""
    shapes = np.asarray(shapes, dtype=np.float32).reshape(-1, 2)
    sx = to_size[0] / from_size[0]
    sy = to_size[1] / from_size[1]
    return shapes * np.array([sx, sy], dtype=np.float32)


def anchor_grid(
    input_width: int,
    input_height: int,
    anchor_shapes=DEFAULT_KITTI_ANCHOR_SHAPES,
    grid: tuple[int, int] | None = None,
) -> np.ndarray:
    """All anchors as float32 [grid_h * grid_w * A, 4] in (cx, cy, w, h) input-pixel coordinates.

    ``grid`` is (grid_width, grid_height); None = the SAME-padded grid of the input size."""
    shapes = np.asarray(anchor_shapes, dtype=np.float32).reshape(-1, 2)
    gw, gh = grid if grid is not None else grid_size(input_width, input_height)
    cx = np.arange(1, gw + 1, dtype=np.float32) * float(input_width) / (gw + 1)
    cy = np.arange(1, gh + 1, dtype=np.float32) * float(input_height) / (gh + 1)
    a = len(shapes)
    grid = np.zeros((gh, gw, a, 4), dtype=np.float32)
    grid[..., 0] = cx[None, :, None]
    grid[..., 1] = cy[:, None, None]
    grid[..., 2] = shapes[None, None, :, 0]
    grid[..., 3] = shapes[None, None, :, 1]
    return grid.reshape(-1, 4)
