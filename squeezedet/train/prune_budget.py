"""How many channels each fire module keeps under a MAC budget (``squeezedet prune --macs 0.6``).

Two plans: ``uniform`` keeps the same fraction of every layer (ThiNet's choice), ``sensitivity`` removes,
``multiple`` channels at a time, wherever the next layer's reconstruction error grows least per MAC saved
(error curves from channel_selection.removal_curve, measured on the unpruned network). Channel counts stay
multiples of ``multiple``: int8 kernels (XNNPACK, oneDNN) fill their SIMD lanes 8 or 16 channels at a time,
so 60 channels run no faster than 64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Layout = dict[str, tuple[int, int, int]]  #: fire name -> (squeeze, expand 1x1, expand 3x3), network order
Unit = tuple[str, int]  #: (fire, 0 = squeeze / 1 = expand 1x1 / 2 = expand 3x3)


@dataclass(frozen=True)
class MacCounter:
    """MACs of any channel layout of one network (spatial sizes fixed, channels free)."""

    areas: dict[str, int]  #: per conv layer: kernel area x output positions
    conv1_filters: int
    head_outputs: int

    @classmethod
    def of(cls, model) -> MacCounter:
        import keras

        areas = {layer.name: int(np.prod(layer.kernel.shape[:2]) * np.prod(layer.output.shape[1:3]))
                 for layer in model.layers if isinstance(layer, keras.layers.Conv2D)}
        return cls(areas, model.get_layer("conv1").filters, model.get_layer("convdet").filters)

    def __call__(self, layout: Layout) -> int:
        """As squeezedet.model.squeezedet.count_macs counts: conv layers, kernel x inputs x outputs x positions."""
        a = self.areas
        total = a["conv1"] * 3 * self.conv1_filters
        inputs = self.conv1_filters
        for fire, (s, e1, e3) in layout.items():
            total += a[f"{fire}_squeeze1x1"] * inputs * s
            total += (a[f"{fire}_expand1x1"] * e1 + a[f"{fire}_expand3x3"] * e3) * s
            inputs = e1 + e3
        return total + a["convdet"] * inputs * self.head_outputs


def shrink(channels: int, ratio: float, multiple: int) -> int:
    """``channels x ratio`` rounded to a multiple of ``multiple``, at least one multiple, at most ``channels``."""
    return min(channels, max(multiple, int(round(channels * ratio / multiple)) * multiple))


def check_budget(count: MacCounter, layout: Layout, macs_fraction: float, multiple: int = 8,
                 keep: Sequence[str] = ()) -> float:
    """The budget in MACs; a ValueError when even ``multiple`` channels per layer (``keep`` whole) exceed it."""
    budget = macs_fraction * count(layout)
    smallest = {f: c if f in keep else tuple(min(n, multiple) for n in c) for f, c in layout.items()}
    if count(smallest) > budget:
        raise ValueError(f"--macs {macs_fraction:g}: below the smallest layout ({multiple} channels per layer, "
                         f"{count(smallest) / count(layout):.3f} of the MACs); ask for more or a smaller multiple")
    return budget


def uniform_plan(count: MacCounter, layout: Layout, macs_fraction: float, multiple: int = 8,
                 keep: Sequence[str] = ()) -> Layout:
    """The largest keep ratio, the same for every layer (fires in ``keep`` untouched), within the budget."""
    budget = check_budget(count, layout, macs_fraction, multiple, keep)

    def at(ratio: float) -> Layout:
        return {f: c if f in keep else tuple(shrink(n, ratio, multiple) for n in c) for f, c in layout.items()}

    low, high = 0.0, 1.0
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if count(at(mid)) <= budget else (low, mid)
    return at(low)


def sensitivity_plan(count: MacCounter, layout: Layout, curves: dict[Unit, np.ndarray], macs_fraction: float,
                     multiple: int = 8, keep: Sequence[str] = ()) -> Layout:
    """Remove ``multiple`` channels at a time from the unit whose error rises least per MAC saved, until
    the layout fits ``macs_fraction`` of the full MACs. ``curves[unit][n]``: error with n channels removed."""
    budget = check_budget(count, layout, macs_fraction, multiple, keep)
    counts = {f: list(c) for f, c in layout.items()}

    def frozen() -> Layout:
        return {f: tuple(c) for f, c in counts.items()}

    while count(frozen()) > budget:
        macs_now, best = count(frozen()), None
        for (fire, i), curve in curves.items():
            n, size = counts[fire][i], layout[fire][i]
            smaller = n - multiple if n % multiple == 0 else n - n % multiple
            if fire in keep or smaller < multiple:
                continue
            counts[fire][i] = smaller
            saved = macs_now - count(frozen())
            counts[fire][i] = n
            rise = max(curve[size - smaller] - curve[size - n], 0.0)
            if saved > 0 and (best is None or rise / saved < best[0]):
                best = (rise / saved, fire, i, smaller)
        if best is None:  # only when units are missing from ``curves``
            raise ValueError(f"--macs {macs_fraction:g}: no error curve left to cut along")
        counts[best[1]][best[2]] = best[3]
    return frozen()
