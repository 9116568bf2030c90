"""TF1 frozen GraphDefs of the original implementation: float weights, or TF's ``quantize_graph
--mode=eightbit`` storage (uint8 per tensor with ``_min``/``_max``, dequantized here).

Geometry is read from the graph, never assumed: padding from the ``conv1`` and ``pool1`` ops, the ConvDet
kernel from ``conv12/kernels``, the anchors (centres and shapes) from the ``bbox/stretching`` constants the
original ``_add_interpretation_graph`` bakes in, and the input size from the box-clipping constants
(``bbox/trimming``: width - 1, height - 1) or a fully defined input placeholder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from squeezedet.errors import ModelFileError, first_line
from squeezedet.importers.base import SourceWeights
from squeezedet.importers.layout import ORIGINAL_LAYERS

#: The original graph's output of the ConvDet layer (BiasAdd, or Dequantize in 8-bit graphs).
OUTPUT_NODE = "conv12/bias_add"
_ANCHOR_CONSTS = {  # what bbox/stretching adds/multiplies the deltas with: cx, cy, w, h per anchor
    "cx": "bbox/stretching/add/x",
    "cy": "bbox/stretching/add_1/x",
    "w": "bbox/stretching/mul/y",
    "h": "bbox/stretching/mul_1/y",
}


def dequantize_min_first(q: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """quint8 -> float32 exactly as the graph's own ops read it: TensorFlow's Dequantize in MIN_FIRST mode
    (zero point rounded to a whole step: (q + round(lo / s)) * s with s = (hi - lo) / 255)."""
    import tensorflow as tf

    return tf.quantization.dequantize(tf.constant(q.astype(np.uint8), tf.quint8), float(lo), float(hi),
                                      mode="MIN_FIRST").numpy().astype(np.float32)


def _parse(path: Path):
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    if not path.is_file():
        raise ModelFileError(f"{path}: a TF1 graph is one .pb file, this is not a file")
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise ModelFileError(f"{path}: not a TensorFlow GraphDef ({exc})") from None
    if not graph_def.node:
        raise ModelFileError(f"{path}: not a TensorFlow GraphDef (no nodes)")
    return graph_def


def _const(nodes: dict, name: str):
    from tensorflow.python.framework import tensor_util

    node = nodes.get(name)
    if node is None or node.op != "Const":
        return None
    value = tensor_util.MakeNdarray(node.attr["value"].tensor)
    if value.dtype.names:  # quint8 & co. come back as structured arrays
        value = value.view(value.dtype[0])
    return value


def _tensor(nodes: dict, base: str) -> tuple[np.ndarray | None, bool]:
    """Float value of ``base`` (``conv1/kernels``): a float Const, or a quint8 Const with _min/_max."""
    value = _const(nodes, base)
    if value is not None:
        return value.astype(np.float32), False
    q = _const(nodes, f"{base}_quint8_const")
    lo, hi = _const(nodes, f"{base}_min"), _const(nodes, f"{base}_max")
    if q is None or lo is None or hi is None:
        return None, False
    return dequantize_min_first(q, float(lo), float(hi)), True


def _padding(graph_def, prefix: str, ops: tuple[str, ...]) -> str | None:
    for node in graph_def.node:
        if node.op in ops and node.name.startswith(prefix):
            return node.attr["padding"].s.decode().lower()
    return None


def _geometry(graph_def, nodes: dict, params: dict, path: Path) -> dict:
    geo: dict = {}
    conv = _padding(graph_def, "conv1/", ("Conv2D", "QuantizedConv2D"))
    pool = _padding(graph_def, "pool1", ("MaxPool", "QuantizedMaxPool"))
    if conv and pool and conv != pool:
        raise ModelFileError(f"{path}: conv1 uses {conv.upper()} and pool1 {pool.upper()} padding; "
                             "SqueezeDet pads both alike")
    if conv or pool:
        geo["padding"] = conv or pool
    geo["convdet_kernel"] = int(params["conv12"][0].shape[0])
    xmax, ymax = _const(nodes, "bbox/trimming/bbox_xmin/y"), _const(nodes, "bbox/trimming/bbox_ymin/y")
    if xmax is not None and ymax is not None:
        geo["input_width"], geo["input_height"] = int(round(float(xmax))) + 1, int(round(float(ymax))) + 1
    else:
        placeholders = [n for n in graph_def.node if n.op == "Placeholder"]
        dims = [d.size for d in placeholders[0].attr["shape"].shape.dim] if placeholders else []
        if len(dims) == 4 and dims[1] > 0 and dims[2] > 0:
            geo["input_height"], geo["input_width"] = dims[1], dims[2]
    arrays = {k: _const(nodes, v) for k, v in _ANCHOR_CONSTS.items()}
    if all(a is not None and a.ndim == 1 for a in arrays.values()):
        cx, cy, w, h = (arrays[k].astype(np.float32) for k in ("cx", "cy", "w", "h"))
        per_cell = int(np.argmax((cx != cx[0]) | (cy != cy[0]))) or len(cx)  # anchors share their cell's centre
        geo["anchor_shapes"] = [[float(a), float(b)] for a, b in zip(w[:per_cell], h[:per_cell])]
        geo["anchors"] = np.stack([cx, cy, w, h], axis=1)
    return geo


def _runner(graph_def, path: Path):
    """Run the GraphDef itself (tf.compat.v1 graph import) up to the raw ConvDet output."""
    import tensorflow as tf

    placeholders = [n.name for n in graph_def.node if n.op == "Placeholder"]
    if len(placeholders) != 1:
        raise ModelFileError(f"{path}: expected one input placeholder, found {len(placeholders)}")
    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
    except (ValueError, tf.errors.OpError) as exc:
        raise ModelFileError(f"{path}: TensorFlow cannot load this graph ({first_line(exc)})") from None
    session = tf.compat.v1.Session(graph=graph)
    feed, fetch = f"{placeholders[0]}:0", f"{OUTPUT_NODE}:0"

    def run(images_bgr: np.ndarray) -> np.ndarray:
        try:
            return np.concatenate([session.run(fetch, {feed: img[None]}) for img in images_bgr])
        except (ValueError, tf.errors.OpError) as exc:
            raise ModelFileError(f"{path}: running the graph failed ({first_line(exc)})") from None

    return run


def read_tf1_graph(path: Path) -> SourceWeights:
    graph_def = _parse(path)
    nodes = {n.name: n for n in graph_def.node}
    params, quantized, missing = {}, False, []
    for name in ORIGINAL_LAYERS:
        kernel, q1 = _tensor(nodes, f"{name}/kernels")
        bias, q2 = _tensor(nodes, f"{name}/biases")
        if kernel is None or bias is None:
            missing.append(f"{name}/{'kernels' if kernel is None else 'biases'}")
            continue
        params[name] = (kernel, bias)
        quantized |= q1 or q2
    if missing:
        raise ModelFileError(f"{path}: not a SqueezeDet graph: no constant {missing[0]}"
                             + (f" (+{len(missing) - 1} more missing)" if len(missing) > 1 else ""))
    if OUTPUT_NODE not in nodes:
        raise ModelFileError(f"{path}: not a SqueezeDet graph: no {OUTPUT_NODE} node (the ConvDet output)")
    source = SourceWeights(path=path, format="tf1-graph", params=params, quantized=quantized,
                           run=_runner(graph_def, path), run_8bit=quantized)
    source.check_complete()
    source.geometry = _geometry(graph_def, nodes, params, path)
    return source
