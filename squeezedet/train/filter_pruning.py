"""Filter (channel) pruning of the fire modules to a MAC budget: fewer channels, so every engine runs less.

Magnitude pruning (squeezedet.train.pruning) zeroes weights, which makes a model compress but not run
faster; removing whole channels makes every convolution smaller. Each fire module has two places to cut:
its squeeze output (read by its two expand convolutions) and its concatenated expand output (read by the
next squeeze, or by ConvDet after fire11). They are cut front to back; at each, ThiNet's greedy selection
(squeezedet.train.channel_selection) picks the channels whose removal changes the reading layer's output
least on sample frames, the producing filters go, and the reading layer is rescaled. conv1 and the
ConvDet head keep their outputs, so the raw output tensor (and its decoder) stays the same.

The result is an ordinary model: the new channel counts are the geometry's ``fire_channels``, which
``build_model`` follows, so val, predict, export and the daemon need nothing special.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from squeezedet.train.channel_selection import ConsumerStats, removal_curve, rescale, select_channels
from squeezedet.train.prune_budget import Layout

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class CutPoint:
    """Where channels are cut: the layers that produce them (concatenated) and the layers that read them."""

    fire: str
    part: str  #: "squeeze" or "expand"
    producers: tuple[str, ...]
    consumers: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.fire}_{self.part}"

    def sizes(self, layout: Layout) -> list[int]:
        """Channels of each producer in ``layout``."""
        s, e1, e3 = layout[self.fire]
        return [s] if self.part == "squeeze" else [e1, e3]


def cut_points(layout: Layout) -> list[CutPoint]:
    """Every place to cut, in network order (``layout`` is in network order, as the geometry gives it)."""
    fires = list(layout)
    points = []
    for i, f in enumerate(fires):
        reader = f"{fires[i + 1]}_squeeze1x1" if i + 1 < len(fires) else "convdet"
        points.append(CutPoint(f, "squeeze", (f"{f}_squeeze1x1",), (f"{f}_expand1x1", f"{f}_expand3x3")))
        points.append(CutPoint(f, "expand", (f"{f}_expand1x1", f"{f}_expand3x3"), (reader,)))
    return points


def model_weights(model: keras.Model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def _reader(model: keras.Model, layer: str) -> Callable[[np.ndarray], np.ndarray]:
    """frames [B, H, W, 3] uint8 -> the input of ``layer`` [B, h, w, C] (float32)."""
    sub = keras.Model(model.input, model.get_layer(layer).input)
    return lambda frames: keras.ops.convert_to_numpy(sub(frames, training=False)).astype(np.float32)


def head_spread(model: keras.Model, frames: np.ndarray, batch: int = 4) -> np.ndarray:
    """1 / standard deviation of each ConvDet output channel on ``frames`` (ConsumerStats.output_weight)."""
    outs = [keras.ops.convert_to_numpy(model(frames[i : i + batch], training=False)) for i in range(0, len(frames), batch)]
    flat = np.concatenate(outs).reshape(-1, outs[0].shape[-1])
    return 1.0 / np.maximum(flat.std(axis=0), 1e-3)


def gather_stats(current: keras.Model, original: keras.Model, point: CutPoint, frames: np.ndarray,
                 positions: int, rng: np.random.Generator, batch: int = 4) -> list[ConsumerStats]:
    """Sums for the channel choice at ``point``: the readers' inputs in the network pruned so far and in
    the original, at ``positions`` random output positions per frame."""
    read_current = _reader(current, point.consumers[0])
    read_original = read_current if original is current else _reader(original, point.consumers[0])
    kernels = [original.get_layer(c).get_weights()[0] for c in point.consumers]
    spread = head_spread(original, frames) if point.consumers == ("convdet",) else None
    stats = [ConsumerStats(k.shape[2], k.shape[3], spread) for k in kernels]
    for start in range(0, len(frames), batch):
        chunk = frames[start : start + batch]
        xs_current = read_current(chunk)
        xs_original = xs_current if original is current else read_original(chunk)
        for x_cur, x_orig in zip(xs_current, xs_original, strict=True):
            h, w = x_cur.shape[:2]
            where = rng.choice(h * w, size=min(positions, h * w), replace=False)
            for st, kernel in zip(stats, kernels, strict=True):
                st.add(x_cur, x_orig, kernel, where)
    return stats


def sensitivity_curves(model: keras.Model, layout: Layout, frames: np.ndarray, positions: int = 256, seed: int = 0,
                       progress=None) -> dict[tuple[str, int], np.ndarray]:
    """Per (fire, 0 squeeze / 1 expand 1x1 / 2 expand 3x3): the readers' relative error with n of its
    channels removed greedily, all else unpruned (prune_budget.sensitivity_plan's input)."""
    rng = np.random.default_rng(seed)
    curves = {}
    for point in cut_points(layout):
        if progress:
            progress(point.name)
        stats = gather_stats(model, model, point, frames, positions, rng)
        groups = np.repeat(np.arange(1, 1 + len(point.sizes(layout))), point.sizes(layout))
        for i in np.unique(groups):
            curves[(point.fire, 0 if point.part == "squeeze" else int(i))] = removal_curve(stats, groups == i)
    return curves


def cut(weights: dict, point: CutPoint, kept: np.ndarray, sizes: list[int], stats: list[ConsumerStats],
        rescale_readers: bool = True) -> list[int]:
    """Drop the producers' filters not in ``kept`` (indices into their concatenation) and the readers'
    matching input channels, rescaled by least squares; returns the kept count per producer."""
    counts, offset = [], 0
    for layer, size in zip(point.producers, sizes, strict=True):
        mine = kept[(kept >= offset) & (kept < offset + size)] - offset
        kernel, bias = weights[layer]
        weights[layer] = [kernel[..., mine], bias[mine]]
        counts.append(len(mine))
        offset += size
    for layer, st in zip(point.consumers, stats, strict=True):
        kernel, bias = weights[layer]
        kernel = kernel[:, :, kept, :]
        if rescale_readers:
            scale, shift = rescale(st, kept)
            kernel, bias = kernel * scale[None, None, :, None].astype(kernel.dtype), bias + shift.astype(bias.dtype)
        weights[layer] = [kernel, bias]
    return counts


def relative_error(stats: list[ConsumerStats], kept: np.ndarray | None = None, scaled: bool = False) -> float:
    """||original output - output||^2 / ||original output||^2 of the readers (bias aside), summed over them:
    as pruned so far (``kept`` None), after dropping all but ``kept``, or after that and the rescale."""
    err = 0.0
    for st in stats:
        if kept is None:
            err += st.residual_energy
        elif not scaled:
            err += st.error(np.setdiff1d(np.arange(st.channels), kept))
        else:
            scale, _ = rescale(st, kept)
            target = st.cross[kept] + st.gram[kept].sum(axis=1)
            err += st.target_energy - 2 * scale @ target + scale @ st.gram[np.ix_(kept, kept)] @ scale
    return float(err / max(sum(st.target_energy for st in stats), 1e-12))


def with_layout(model_cfg, layout: Layout):
    """``model_cfg`` (a ModelConfig) with ``layout`` as its fire_channels, validated."""
    data = model_cfg.model_dump()
    data["fire_channels"] = {fire: list(channels) for fire, channels in layout.items()}
    return type(model_cfg).model_validate(data)


def prune_model(model: keras.Model, model_cfg, frames: np.ndarray, target: Layout, positions: int = 256,
                seed: int = 0, rescale_readers: bool = True, progress=None) -> tuple[keras.Model, object, list[dict]]:
    """Cut ``model`` (built from ``model_cfg``) down to the ``target`` layout, one cut point at a time,
    choosing channels on ``frames`` (uint8 [N, H, W, 3] at the model input); returns (pruned model, its
    ModelConfig, one report row per cut point). ``progress(point_name)`` is called before each point."""
    from squeezedet.model import build_model

    rng = np.random.default_rng(seed)
    layout = dict(model_cfg.fire_layout())
    weights = model_weights(model)
    current, rows = model, []
    for point in cut_points(layout):
        if progress:
            progress(point.name)
        sizes = point.sizes(layout)
        keep = [target[point.fire][0]] if point.part == "squeeze" else list(target[point.fire][1:])
        if keep == sizes:
            continue
        stats = gather_stats(current, model, point, frames, positions, rng)
        kept = select_channels(stats, keep, sizes)
        row = {"point": point.name, "channels": [int(n) for n in sizes], "kept": keep,
               "error_before": relative_error(stats), "error_cut": relative_error(stats, kept),
               "error_rescaled": relative_error(stats, kept, scaled=True) if rescale_readers else None}
        counts = cut(weights, point, kept, sizes, stats, rescale_readers)
        s, e1, e3 = layout[point.fire]
        layout[point.fire] = (counts[0], e1, e3) if point.part == "squeeze" else (s, *counts)
        current = build_model(with_layout(model_cfg, layout), training_dropout=False)
        for layer in current.layers:
            if layer.weights:
                layer.set_weights(weights[layer.name])
        log.info("%s: %s -> %s channels, output error %.4f -> %.4f (%.4f rescaled)", point.name, sizes, keep,
                 row["error_before"], row["error_cut"], row["error_rescaled"] or row["error_cut"])
        rows.append(row)
    return current, with_layout(model_cfg, layout), rows
