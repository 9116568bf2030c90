"""The reader chosen by ``--format`` or auto-detection, from one table of readers imported on demand."""

from __future__ import annotations

import importlib
from pathlib import Path

from squeezedet.errors import ModelFileError
from squeezedet.importers.base import SourceWeights

#: format -> (reader module, its ``read(path) -> SourceWeights``); TensorFlow loads only with a TF1 reader.
READERS: dict[str, tuple[str, str]] = {
    "tf1-graph": ("squeezedet.importers.tf1_graph", "read_tf1_graph"),
    "tf1-checkpoint": ("squeezedet.importers.tf1_checkpoint", "read_tf1_checkpoint"),
    "raw-float32": ("squeezedet.importers.raw_float32", "read_raw_float32"),
}
FORMATS = tuple(READERS)


def detect_format(path: Path) -> str:
    if path.is_dir():
        if any(path.glob("*_W.bin")):
            return "raw-float32"
        if any(path.glob("*.index")) or (path / "checkpoint").is_file():
            return "tf1-checkpoint"
        raise ModelFileError(f"{path}: folder holds neither <layer>_W.bin files nor a TF checkpoint")
    if path.suffix == ".pb":
        return "tf1-graph"
    if path.suffix == ".index" or Path(f"{path}.index").is_file():
        return "tf1-checkpoint"
    raise ModelFileError(f"{path}: cannot tell the format (expected a .pb graph, a checkpoint prefix or a folder of "
                         "<layer>_W.bin); pass --format")


def read_source(path, fmt: str = "auto") -> SourceWeights:
    path = Path(path)
    if not path.exists() and not Path(f"{path}.index").is_file():
        raise ModelFileError(f"{path}: not found")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in READERS:
        raise ModelFileError(f"{path}: unknown format {fmt!r} (choose from auto, {', '.join(FORMATS)})")
    module, reader = READERS[fmt]
    return getattr(importlib.import_module(module), reader)(path)
