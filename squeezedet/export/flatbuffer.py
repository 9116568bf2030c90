"""Rewrites of the converter's .tflite flatbuffer that change its bytes, never what it computes.

The converter leaves two kinds of dead weight in a full-int8 SqueezeDet (2.24 MB for 2.08 M weights):

* per-channel quantization stores an int64 zero-point per output channel for every kernel and bias.
  Weights are quantized symmetrically, so every one of them is 0: ~75 KB of zeros, written once per
  tensor. FlatBuffers lets any number of tables point to one vector, so identical vectors (these
  zero-points, and any other repeated array) are written once;
* tensor names are the fused MLIR locations ("model_1/backbone_1/fire2_squeeze1x1_1/Relu;model_1/...",
  ~18 KB). They become the Keras layer and role ("fire2_squeeze1x1/kernel", ".../bias", ".../Relu"),
  which is also what a person wants to read in Netron. The graph's input and output names, the
  signature and the metadata entries are kept as they are.

The result is the 2.16 MB int8 file; the interpreter produces bit-identical outputs (tests check it,
and the export compares the two files once more before it keeps the compact one). Constant data is
16-byte aligned.
"""

from __future__ import annotations

import importlib
import re

import flatbuffers
import numpy as np

_FILE_IDENTIFIER = b"TFL3"
#: Ops whose inputs 1 and 2 are a kernel and a bias.
_WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
#: Byte vectors (constant data, custom options) start on 16 bytes, so SIMD kernels that read weights in
#: place never see them misaligned; other vectors keep their element alignment.
_DATA_ALIGNMENT = 16


def schema(prefer_tensorflow: bool = False):
    """The generated TFLite schema module: LiteRT's (devices have no TensorFlow) unless
    ``prefer_tensorflow``, for rewriting files TensorFlow's converter wrote (same schema version)."""
    order = ["tensorflow.lite.python", "ai_edge_litert"]
    for package in order if prefer_tensorflow else order[::-1]:
        try:
            return importlib.import_module(f"{package}.schema_py_generated")
        except ImportError:
            continue
    raise ImportError("no TFLite schema: install ai-edge-litert or tensorflow")


def builtin_names() -> dict[int, str]:
    """BuiltinOperator code -> name (3 -> "CONV_2D")."""
    return {v: k for k, v in vars(schema().BuiltinOperator).items() if not k.startswith("_")}


def op_name(names: dict[int, str], builtin_code: int, deprecated_code: int) -> str:
    """An operator code's name; codes below 127 live in the deprecated field of older files."""
    return names.get(max(builtin_code, deprecated_code), "CUSTOM")


class _SharingBuilder(flatbuffers.Builder):
    """A Builder that writes each distinct vector and string once and aligns byte vectors to 16 bytes."""

    def __init__(self, initial_size: int):
        super().__init__(initial_size)
        self._vectors: dict[tuple, int] = {}

    def CreateNumpyVector(self, x):  # noqa: N802 - flatbuffers' API
        x = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("<"))
        key = (x.dtype.str, x.size, x.tobytes())
        offset = self._vectors.get(key)
        if offset is None:
            if x.dtype == np.uint8:
                self.StartVector(x.itemsize, x.size, _DATA_ALIGNMENT)
                payload = key[2]
                self.head -= len(payload)
                self.Bytes[self.head : self.head + len(payload)] = payload
                self.vectorNumElems = x.size
                offset = self.EndVector()
            else:
                offset = super().CreateNumpyVector(x)
            self._vectors[key] = offset
        return offset

    def CreateString(self, s, encoding="utf-8", errors="strict"):  # noqa: N802 - flatbuffers' API
        if self.sharedStrings is None:
            self.sharedStrings = {}
        if s not in self.sharedStrings:
            self.sharedStrings[s] = flatbuffers.Builder.CreateString(self, s, encoding, errors)
        return self.sharedStrings[s]


def short_name(fused: str) -> str:
    """"m_1/backbone_1/fire2_squeeze1x1_1/Relu;m_1/..." -> "fire2_squeeze1x1/Relu" (first location,
    Keras' call-count suffixes dropped, the layer and the op)."""
    parts = [re.sub(r"_\d+$", "", p) for p in fused.split(";")[0].split("/") if p]
    return "/".join(parts[-2:]) or fused


def _rename_tensors(model) -> None:
    names_of = builtin_names()
    for graph in model.subgraphs:
        keep = {int(i) for i in graph.inputs} | {int(i) for i in graph.outputs}
        names: dict[int, str] = {}
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if op_name(names_of, code.builtinCode, code.deprecatedBuiltinCode) not in _WEIGHTED_OPS:
                continue
            # The kernel's own location names the layer (an output's may be a fused clip or activation).
            kernel = graph.tensors[int(op.inputs[1])]
            layer = short_name(kernel.name.decode()).split("/")[0] if kernel.name else "layer"
            for slot, role in ((1, "kernel"), (2, "bias")):
                if len(op.inputs) > slot and op.inputs[slot] >= 0:
                    names.setdefault(int(op.inputs[slot]), f"{layer}/{role}")
        used: dict[str, int] = {}
        for i, tensor in enumerate(graph.tensors):
            if i in keep or tensor.name is None:
                continue
            name = names.get(i) or short_name(tensor.name.decode())
            count = used.get(name, 0)
            used[name] = count + 1
            tensor.name = (name if count == 0 else f"{name}:{count}").encode()


def compact_tflite(data: bytes) -> bytes:
    """``data`` with readable tensor names and every repeated vector stored once (module docstring)."""
    s = schema(prefer_tensorflow=True)
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(data, 0))
    if any(b.offset for b in model.buffers or []):  # pragma: no cover - >2 GB models keep data outside
        return data
    _rename_tensors(model)
    builder = _SharingBuilder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    return bytes(builder.Output())


def same_outputs(a: bytes, b: bytes, seed: int = 0) -> bool:
    """Do two flatbuffers give bit-identical outputs on a black and a random input (1 thread, so the
    arithmetic order is the same)?"""
    from squeezedet.core.runtime import interpreter_from_bytes

    runs = []
    for data in (a, b):
        interp = interpreter_from_bytes(data, num_threads=1)
        inp = interp.get_input_details()[0]
        rng = np.random.default_rng(seed)
        frames = [np.zeros(inp["shape"], inp["dtype"]),
                  rng.integers(0, 256, inp["shape"]).astype(inp["dtype"])]
        outs = []
        for frame in frames:
            interp.set_tensor(inp["index"], frame)
            interp.invoke()
            outs += [interp.get_tensor(o["index"]).copy() for o in interp.get_output_details()]
        runs.append(outs)
    return all(np.array_equal(x, y) for x, y in zip(*runs))
