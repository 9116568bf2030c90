"""Where an OpenVINO model spends its time, layer by layer, and how fast this CPU can possibly run it.

Runs an OpenVINO IR with per-layer performance counters (the plugin's own timings, in the fused graph it
really executes), joins every convolution with its multiply-accumulate count read from the IR, and prints
per-layer ms, GMAC/s and the kernel each ran on. The best convolution rate gives a floor for the whole
network: total MACs / best rate is what it would take if every layer ran as fast as OpenVINO's best kernel
does here (a measured rate, not the CPU's theoretical peak). With --keras-ms
(Keras fp32 in the same conditions, from benchmarks/export_compare.py) it prints the best speed-up over
Keras that bound allows.

    squeezedet export --weights W --config C --format openvino --quantize int8 --output /tmp/m/int8.xml
    python benchmarks/openvino_layer_profile.py /tmp/m/int8.xml [--threads 2] [--runs 30] [--keras-ms 92.8]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np


class Layer(NamedTuple):
    """One executed node: its time per frame, and MACs and rate when it is a convolution of the IR."""

    ms: float
    name: str
    kind: str
    kernel: str
    macs: int
    rate: float | None  #: GMAC/s


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="OpenVINO IR (.xml with its .bin)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--top", type=int, default=15, help="layers listed (slowest first)")
    p.add_argument("--keras-ms", type=float, help="Keras fp32 ms per frame measured beside it (for the bound)")
    return p.parse_args(argv)


def conv_macs(model) -> dict[str, int]:
    """Multiply-accumulates of every Convolution in the IR, by node name: output pixels x kernel volume."""
    macs = {}
    for op in model.get_ops():
        if op.get_type_name() != "Convolution":
            continue
        out = [int(d) for d in op.get_output_partial_shape(0).to_shape()]  # N, C_out, H, W
        weights = [int(d) for d in op.input_value(1).get_partial_shape().to_shape()]  # C_out, C_in, kh, kw
        macs[op.get_friendly_name()] = int(np.prod(out)) * int(np.prod(weights[1:]))
    return macs


def short_name(node: str) -> str:
    """The layer a node came from: ``.../fire10_expand3x3_1/BiasAdd/WithoutBiases`` -> ``fire10_expand3x3_1``."""
    parts = node.removesuffix("/BiasAdd/WithoutBiases").split("/")
    return parts[-2] if len(parts) > 1 and "_" not in parts[-1] else parts[-1]


def main(argv=None) -> int:
    args = parse_args(argv)
    path = Path(args.model)
    if not path.is_file() or not path.with_suffix(".bin").is_file():
        print(f"openvino_layer_profile: error: {path}: OpenVINO IR (.xml + .bin) not found", file=sys.stderr)
        return 2
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    macs = conv_macs(model)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": args.threads, "PERF_COUNT": True,
                                                 "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    shape = [int(d) for d in compiled.input(0).get_partial_shape().to_shape()]
    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for _ in range(5):
        request.infer({0: x})
    per_layer: dict[tuple[str, str, str], float] = defaultdict(float)
    wall = []
    for _ in range(args.runs):
        request.infer({0: x})
        wall.append(request.latency)
        for info in request.profiling_info:
            per_layer[(info.node_name, info.node_type, info.exec_type)] += \
                info.real_time.total_seconds() * 1e3 / args.runs
    median = float(np.median(wall))
    counted = sum(per_layer.values())
    total_macs = sum(macs.values())
    rows = []
    for (name, kind, kernel), ms in per_layer.items():
        m = macs.get(name, 0)
        rows.append(Layer(ms, name, kind, kernel, m, m / ms / 1e6 if m and ms > 0 else None))
    rows.sort(key=lambda r: r.ms, reverse=True)
    print(f"{path.name}: input {'x'.join(map(str, shape))}, {args.threads} threads, {args.runs} runs, "
          f"openvino {ov.get_version()}")
    print(f"median {median:.1f} ms per frame; layers add up to {counted:.1f} ms; "
          f"{len(macs)} convolutions, {total_macs / 1e9:.2f} GMAC\n")
    print("| ms | share | layer | type | kernel | MMAC | GMAC/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows[:args.top]:
        print(f"| {r.ms:.2f} | {r.ms / counted:.0%} | {short_name(r.name)} | {r.kind} | {r.kernel} | "
              f"{r.macs / 1e6:.0f} | {'-' if r.rate is None else f'{r.rate:.0f}'} |")
    by_kind: dict[str, float] = defaultdict(float)
    for r in rows:
        by_kind[f"{r.kind} ({r.kernel})"] += r.ms
    print("\nby layer type: " + ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])))
    conv_ms = sum(r.ms for r in rows if r.macs)
    best = max((r.rate for r in rows if r.rate is not None), default=None)
    if best is None:
        print("no convolution matched its MAC count: nothing to bound")
        return 0
    floor = total_macs / best / 1e6
    print(f"convolutions: {conv_ms:.1f} ms at {total_macs / conv_ms / 1e6:.0f} GMAC/s on average; "
          f"the fastest one ran at {best:.0f} GMAC/s")
    print(f"floor: every convolution at {best:.0f} GMAC/s would still take {floor:.1f} ms "
          f"({median / floor:.2f}x below the measured {median:.1f} ms)")
    if args.keras_ms:
        print(f"Keras fp32 {args.keras_ms:.1f} ms: measured speed-up {args.keras_ms / median:.2f}x; "
              f"at the floor {args.keras_ms / floor:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
