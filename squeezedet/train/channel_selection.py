"""ThiNet's channel selection (Luo et al., ICCV 2017) on the next layer's reconstruction, in numpy.

Which output channels of layer L may go is decided by layer L+1: each of its input channels c adds a
contribution x_c to L+1's output (its slice of the convolution), and the channels whose removal changes
that output least, on sample activations, are removed greedily, one at a time. The objective is the
squared error against the *unpruned* network's output of L+1, with the inputs of the network pruned so far
(as in He et al.'s channel pruning), so the errors of earlier layers are corrected rather than compounded.
Afterwards each kept channel's weights in L+1 are rescaled by least squares (ThiNet's scaling factors)
and L+1's bias absorbs the mean of what is left.

Everything is accumulated as a Gram matrix of the contributions, ``G[c, d] = <x_c, x_d>``, and their
products with the residual, ``g[c] = <r, x_c>``, so the greedy search costs O(channels^2), not a pass over
the samples per candidate. Contributions sum over the consumer's output channels and sample positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def patches(x: np.ndarray, kernel: tuple[int, int], positions: np.ndarray) -> np.ndarray:
    """[m, kh*kw, C] inputs of a stride-1 'same' convolution at flat output ``positions`` of ``x`` [H, W, C]."""
    kh, kw = kernel
    h, w, _ = x.shape
    padded = np.pad(x, ((kh // 2, (kh - 1) // 2), (kw // 2, (kw - 1) // 2), (0, 0)))
    rows, cols = np.divmod(positions, w)
    taps = [padded[rows + dy, cols + dx] for dy in range(kh) for dx in range(kw)]
    return np.stack(taps, axis=1)


@dataclass
class ConsumerStats:
    """Sums over sample positions for one consumer layer (L+1) of the channels being selected."""

    channels: int
    outputs: int
    #: Weight of each output channel's error (None = 1): a head mixing logits of +-30 with box deltas of
    #: +-0.2 weighs each channel by 1 / its spread, or the deltas would not count.
    output_weight: np.ndarray | None = None
    gram: np.ndarray = field(init=False)  #: [C, C] <x_c, x_d>
    cross: np.ndarray = field(init=False)  #: [C] <r0, x_c>, r0 = original output - current output
    sums: np.ndarray = field(init=False)  #: [C, K] sum over positions of x_c
    residual_sum: np.ndarray = field(init=False)  #: [K] sum over positions of r0
    residual_energy: float = 0.0  #: ||r0||^2
    target_energy: float = 0.0  #: ||original output - bias||^2
    samples: int = 0

    def __post_init__(self):
        self.gram = np.zeros((self.channels, self.channels))
        self.cross = np.zeros(self.channels)
        self.sums = np.zeros((self.channels, self.outputs))
        self.residual_sum = np.zeros(self.outputs)

    def add(self, x_current: np.ndarray, x_original: np.ndarray, kernel: np.ndarray, positions: np.ndarray) -> None:
        """Accumulate one image: the consumer's input [H, W, C] in the network pruned so far and in the original.

        With taps t of the kernel, <x_c, x_d> = sum_{t,u} <X_t,c, X_u,d> <W_t,c, W_u,d>: products of the
        inputs times products of the weights, never the [positions, C, K] contributions themselves."""
        kh, kw, c, k = kernel.shape
        w = kernel.reshape(kh * kw, c, k).astype(np.float64)
        if self.output_weight is not None:
            w = w * self.output_weight
        p = patches(x_current, (kh, kw), positions).astype(np.float64)
        target = np.einsum("mtc,tck->mk", patches(x_original, (kh, kw), positions), w, optimize=True)
        residual = target - np.einsum("mtc,tck->mk", p, w, optimize=True)
        inputs = np.einsum("mtc,mud->tucd", p, p, optimize=True)
        weights = np.einsum("tck,udk->tucd", w, w, optimize=True)
        self.gram += np.einsum("tucd,tucd->cd", inputs, weights, optimize=True)
        self.cross += np.einsum("mtc,mk,tck->c", p, residual, w, optimize=True)
        self.sums += np.einsum("tc,tck->ck", p.sum(axis=0), w)
        self.residual_sum += residual.sum(axis=0)
        self.residual_energy += float(np.sum(residual**2))
        self.target_energy += float(np.sum(target**2))
        self.samples += len(positions)

    def error(self, removed) -> float:
        """||original output - output without ``removed`` (unscaled)||^2, from the sums alone."""
        r = np.asarray(sorted(removed), int)
        return float(self.residual_energy + 2 * self.cross[r].sum() + self.gram[np.ix_(r, r)].sum())


def combined(stats: list[ConsumerStats]) -> tuple[np.ndarray, np.ndarray, float]:
    """(Gram, cross, ||r0||^2) of several consumers of the same channels (their errors add up)."""
    return (sum(s.gram for s in stats), sum(s.cross for s in stats), sum(s.residual_energy for s in stats))


def greedy_removal(gram: np.ndarray, cross: np.ndarray, quotas: dict[int, int],
                   groups: np.ndarray) -> tuple[list[int], list[float]]:
    """(channels to remove in the order chosen, the error increase of each): each step takes the channel
    whose removal raises the error least, given those already removed; ``quotas[g]`` channels of each
    group ``groups == g``.

    Removing c from a set R changes the error by 2 * (cross[c] + sum_{d in R} gram[d, c]) + gram[c, c]."""
    left = {int(g): int(n) for g, n in quotas.items()}
    if any(n < 0 or n > int(np.sum(groups == g)) for g, n in left.items()):
        raise ValueError(f"quotas {quotas} do not fit the groups' sizes")
    coupling = cross.astype(np.float64).copy()
    available = np.array([left.get(int(g), 0) > 0 for g in groups])
    order, increases = [], []
    for _ in range(sum(left.values())):
        increase = np.where(available, 2 * coupling + np.diag(gram), np.inf)
        c = int(np.argmin(increase))
        order.append(c)
        increases.append(float(increase[c]))
        coupling += gram[c]
        available[c] = False
        group = int(groups[c])
        left[group] -= 1
        if left[group] == 0:
            available &= groups != group
    return order, increases


def refine_by_swaps(gram: np.ndarray, cross: np.ndarray, removed: list[int], groups: np.ndarray,
                    max_swaps: int = 1000) -> list[int]:
    """Greedy's set improved by exchanges: while putting back a removed channel a and removing a kept b
    of the same group lowers the error, do the best such swap (greedy cannot undo an early choice).

    The swap changes the error by 2 (v_b - v_a) + gram[a, a] + gram[b, b] - 2 gram[a, b], with
    v_c = cross[c] + sum_{d in removed} gram[d, c]."""
    out = np.zeros(len(cross), bool)
    out[removed] = True
    coupling = cross + gram[:, out].sum(axis=1)
    diag = np.diag(gram)
    same_group = groups[:, None] == groups[None, :]
    for _ in range(max_swaps):
        a, b = np.flatnonzero(out), np.flatnonzero(~out)
        if not len(a) or not len(b):
            break
        delta = 2 * (coupling[b][None] - coupling[a][:, None]) + diag[a][:, None] + diag[b][None] - 2 * gram[np.ix_(a, b)]
        delta = np.where(same_group[np.ix_(a, b)], delta, np.inf)
        i, j = np.unravel_index(np.argmin(delta), delta.shape)
        if not delta[i, j] < -1e-12 * max(abs(float(diag.max())), 1.0):
            break
        out[a[i]], out[b[j]] = False, True
        coupling += gram[b[j]] - gram[a[i]]
    return [int(c) for c in np.flatnonzero(out)]


def removal_curve(stats: list[ConsumerStats], group: np.ndarray) -> np.ndarray:
    """Relative error of the readers when the channels in ``group`` (a boolean mask) are removed greedily:
    entry n is the error with n of them removed, the others kept."""
    gram, cross, energy = combined(stats)
    _, increases = greedy_removal(gram, cross, {1: int(group.sum())}, group.astype(int))
    target = max(sum(s.target_energy for s in stats), 1e-12)
    return (energy + np.concatenate([[0.0], np.cumsum(increases)])) / target


def rescale(stats: ConsumerStats, kept: np.ndarray, ridge: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """(scale per kept channel, bias change per output) that bring the consumer back towards its original
    output: ThiNet's least-squares scaling factors, then the mean residual folded into the bias."""
    g = stats.gram[np.ix_(kept, kept)]
    # <original output, x_c> = <r0 + sum of every contribution, x_c>
    target = stats.cross[kept] + stats.gram[kept].sum(axis=1)
    damping = ridge * max(float(np.trace(g)) / max(len(kept), 1), 1e-12)
    scale = np.linalg.solve(g + damping * np.eye(len(kept)), target)
    # residual sum after the change: r0 + everything the current network sends, minus the kept part scaled
    residual = stats.residual_sum + stats.sums.sum(axis=0) - scale @ stats.sums[kept]
    shift = residual / max(stats.samples, 1)
    return scale, shift if stats.output_weight is None else shift / stats.output_weight


def select_channels(stats: list[ConsumerStats], keep: list[int], group_sizes: list[int]) -> np.ndarray:
    """Indices of the channels to keep (sorted): ``keep[i]`` of the ``group_sizes[i]`` channels of group i
    (an expand 1x1 and an expand 3x3 output share one concatenated input of the next layer)."""
    if sum(group_sizes) != stats[0].channels:
        raise ValueError(f"group sizes {group_sizes} do not add up to {stats[0].channels} channels")
    groups = np.repeat(np.arange(len(group_sizes)), group_sizes)
    gram, cross, _ = combined(stats)
    quotas = {i: size - k for i, (size, k) in enumerate(zip(group_sizes, keep, strict=True))}
    removed = set(refine_by_swaps(gram, cross, greedy_removal(gram, cross, quotas, groups)[0], groups))
    return np.array([c for c in range(len(groups)) if c not in removed], int)
