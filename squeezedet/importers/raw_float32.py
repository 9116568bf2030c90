"""The raw per-layer float32 parameter set of the authors' Metal (Forge) iOS demo.

One file per tensor: ``<layer>_W.bin`` (kernel) and ``<layer>_b.bin`` (bias), little-endian float32 with
no header; ``<layer>`` is the original name with ``/`` as ``_`` (``fire2_squeeze1x1``). Kernels are stored
output-channel first, O x H x W x I (Metal's order). Kernels are square, so H = W = sqrt(size / (O * I)),
with O from the bias length and I from the previous layer. The files carry no geometry.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from squeezedet.errors import ModelFileError
from squeezedet.importers.base import SourceWeights
from squeezedet.importers.layout import ORIGINAL_LAYERS


def _input_channels(name: str, params: dict) -> int:
    """Channels entering a layer, from the layers already read (fire expand outputs are concatenated)."""
    if name == "conv1":
        return 3
    if name.endswith(("expand1x1", "expand3x3")):
        return params[name.rsplit("/", 1)[0] + "/squeeze1x1"][1].shape[0]
    block = _block_before(name)
    if block == "conv1":
        return params["conv1"][1].shape[0]
    return params[f"{block}/expand1x1"][1].shape[0] + params[f"{block}/expand3x3"][1].shape[0]


def _block_before(name: str) -> str:
    block = name.split("/")[0]
    n = 12 if block == "conv12" else int(block[4:])
    return "conv1" if n == 2 else f"fire{n - 1}"


def _read(path: Path) -> np.ndarray:
    data = path.read_bytes()
    if len(data) % 4:
        raise ModelFileError(f"{path}: {len(data)} bytes is not a whole number of float32 values")
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def read_raw_float32(folder: Path) -> SourceWeights:
    if not folder.is_dir():
        raise ModelFileError(f"{folder}: a raw-float32 set is a folder of <layer>_W.bin/_b.bin files")
    params: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    missing = [n for n in ORIGINAL_LAYERS if not (folder / f"{n.replace('/', '_')}_W.bin").is_file()
               or not (folder / f"{n.replace('/', '_')}_b.bin").is_file()]
    if missing:
        raise ModelFileError(f"{folder}: not a SqueezeDet raw-float32 folder: missing "
                             f"{missing[0].replace('/', '_')}_W.bin/_b.bin" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
    for name in ORIGINAL_LAYERS:
        stem = folder / name.replace("/", "_")
        bias = _read(Path(f"{stem}_b.bin"))
        flat = _read(Path(f"{stem}_W.bin"))
        out_ch, in_ch = bias.size, _input_channels(name, params)
        k = math.isqrt(flat.size // max(out_ch * in_ch, 1))
        if k * k * out_ch * in_ch != flat.size:
            raise ModelFileError(f"{stem}_W.bin: {flat.size} values do not form a square kernel of "
                                 f"{out_ch} outputs x {in_ch} inputs")
        kernel = flat.reshape(out_ch, k, k, in_ch).transpose(1, 2, 3, 0)  # OHWI -> HWIO
        params[name] = (np.ascontiguousarray(kernel), bias)
    source = SourceWeights(path=folder, format="raw-float32", params=params)
    source.check_complete()
    source.geometry = {"convdet_kernel": int(params["conv12"][0].shape[0])}
    return source
