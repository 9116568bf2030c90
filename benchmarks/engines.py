"""One latency table for any machine: every engine x precision x model, timed in interleaved rounds.

Each Keras model given (``--weights``, with its config) is exported at ``--size`` to TFLite (fp32 / fp16 /
int8, run by LiteRT), ONNX (fp32 / int8, ONNX Runtime) and OpenVINO IR (fp32 / fp16 / int8) and also run by
Keras itself; files already exported (``--model``) are timed as they are. Then every engine runs once per
round on the same frame, so background load on a shared machine hits them all alike, and the table gives
median / min / max ms and the speed-up over a baseline row. The header names the CPU, the int8
instructions its flags show (x86: AVX512_VNNI, AVX_VNNI, AMX_INT8; ARM: dot product, i8mm), the thread
count and the load average, because int8 speed depends on exactly those.

    python benchmarks/engines.py --weights runs/reference/small_float32/model.weights.h5 \\
        [--weights pruned/model.weights.h5 ...] [--model m.onnx ...] [--threads 2] [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_compare import COMBOS, SAMPLE, interleaved, setup_logging  # noqa: E402 - sibling script, path set above

#: engine names in the table, by the format that engine runs
ENGINE_OF = {"keras": "keras", "tflite": "litert", "onnx": "onnxruntime", "openvino": "openvino"}
#: /proc/cpuinfo flags worth naming for int8 speed
X86_FLAGS = (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "AVX512_VNNI"), ("avx_vnni", "AVX_VNNI"),
             ("amx_int8", "AMX_INT8"))
ARM_FLAGS = (("asimddp", "dot product (SDOT)"), ("i8mm", "I8MM"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", action="append", default=[], help="Keras .weights.h5 to export and time (repeatable)")
    p.add_argument("--config", action="append", default=[], help="config of each --weights, in order "
                   "(default: config.yaml beside them)")
    p.add_argument("--model", action="append", default=[], help="an exported .tflite / .onnx / .xml to time as is")
    p.add_argument("--engines", default="litert,onnxruntime,openvino,keras", help="subset of the four (default all)")
    p.add_argument("--size", default="1248x384", help="input WxH the --weights are exported at (default 1248x384)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30, help="timed rounds, each runs every engine once")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--baseline", default="keras:fp32", help="ENGINE:PRECISION of the row the others are compared "
                   "with, the first model's (default keras:fp32)")
    p.add_argument("--data", default=str(SAMPLE), help="KITTI folder whose train split calibrates int8")
    p.add_argument("--calib-images", type=int, default=64)
    p.add_argument("--out", help="folder for the exported models and engines.json (default: a temporary one)")
    p.add_argument("--reuse", action="store_true", help="time the exports already in --out instead of exporting "
                   "again (same weights and --size assumed)")
    args = p.parse_args(argv)
    if not args.weights and not args.model:
        p.error("give at least one --weights or --model")
    missing = [f for f in (*args.weights, *args.config, *args.model) if not Path(f).is_file()]
    if missing:
        p.error(f"{missing[0]}: file not found")
    if len(args.config) > len(args.weights):
        p.error(f"{len(args.config)} --config for {len(args.weights)} --weights")
    engines = {e.strip() for e in args.engines.split(",") if e.strip()}
    if not engines or engines - set(ENGINE_OF.values()):
        p.error(f"--engines {args.engines!r}: choose from {', '.join(ENGINE_OF.values())}")
    try:
        args.size = tuple(int(v) for v in args.size.lower().split("x"))
    except ValueError:
        args.size = ()
    if len(args.size) != 2 or min(args.size) < 16:
        p.error("--size must be WIDTHxHEIGHT, e.g. 1248x384")
    if args.rounds < 1 or args.threads < 1 or args.warmup < 0:
        p.error("--rounds and --threads must be >= 1, --warmup >= 0")
    engine, _, precision = args.baseline.partition(":")
    if engine not in ENGINE_OF.values() or precision not in ("fp32", "fp16", "int8"):
        p.error(f"--baseline {args.baseline!r}: expected ENGINE:PRECISION, e.g. keras:fp32 or onnxruntime:int8")
    args.engines, args.baseline = engines, (engine, precision)
    return args


def cpu_header(threads: int) -> str:
    """CPU model, its int8 instructions (yes / no from the kernel's flags), threads and load."""
    from squeezedet.backends.onnxruntime import X86, cpu_info

    name, flags = cpu_info()
    names = X86_FLAGS if platform.machine().lower() in X86 else ARM_FLAGS
    if flags is None:
        isa = "int8 instructions unknown (no /proc/cpuinfo)"
    else:
        isa = "int8 instructions: " + ", ".join(f"{label} {'yes' if f in flags else 'no'}" for f, label in names)
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA")
    limit = f"; ONEDNN_MAX_CPU_ISA={limit} (limits OpenVINO and TensorFlow only)" if limit else ""
    return (f"CPU: {name} ({os.cpu_count()} logical CPUs, {platform.machine()}); {isa}; {threads} threads; "
            f"load average {os.getloadavg()[0]:.1f} at start{limit}")


def model_label(path: Path, taken: set) -> str:
    """A short unique name: the run folder of ``model.weights.h5``-style files, else the file's stem."""
    label = path.parent.name if path.name.endswith(".weights.h5") and path.parent.name else path.stem
    base, n = label, 2
    while label in taken:
        label, n = f"{base}-{n}", n + 1
    taken.add(label)
    return label


def export_engines(cfg, weights: Path, folder: Path, args) -> list[tuple[str, str, Path]]:
    """(format, precision, file) of every combination whose engine was asked for, exported at --size."""
    from squeezedet.core.metadata import sidecar_path
    from squeezedet.export.exporter import export_model

    cfg = cfg.model_copy(deep=True)
    cfg.model.input_width, cfg.model.input_height = args.size
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt, quant, suffix, engine in COMBOS:
        path = folder / f"{fmt}_{quant}{suffix}"
        if engine not in args.engines:
            continue
        if not (args.reuse and path.is_file() and sidecar_path(path).is_file()):
            export_model(cfg, weights, path, fmt, quant, calib_root=args.data, calib_images=args.calib_images,
                         calib_split=cfg.data.train_split, check_images=0)
        out.append((fmt, quant, path))
    return out


def load_engines(args, out: Path) -> tuple[dict, dict]:
    """(label, engine, precision) -> a callable on a uint8 frame, and the same key -> its runtime string."""
    import tensorflow as tf

    from squeezedet.backends import BackendOptions, load_backend
    from squeezedet.core.metadata import read_metadata
    from squeezedet.export.graph import load_inference_model
    from squeezedet.inference import config_for_weights

    calls, runtimes, taken = {}, {}, set()
    configs = iter(args.config + [None] * len(args.weights))
    for weights in map(Path, args.weights):
        cfg, label = config_for_weights(weights, next(configs)), model_label(weights, taken)
        files = [(ENGINE_OF[fmt], quant, path) for fmt, quant, path in export_engines(cfg, weights, out / label, args)]
        if "keras" in args.engines:
            speed = cfg.model_copy(deep=True)
            speed.model.input_width, speed.model.input_height = args.size
            model = load_inference_model(speed.model, weights)
            forward = tf.function(lambda x, m=model: m(x, training=False))
            calls[label, "keras", "fp32"] = lambda x, f=forward: f(tf.constant(x)).numpy()
            runtimes[label, "keras", "fp32"] = f"tensorflow {tf.__version__}"
        for engine, quant, path in files:
            loaded = load_backend(path, engine, BackendOptions(num_threads=args.threads))
            calls[label, engine, quant], runtimes[label, engine, quant] = loaded, loaded.describe()
    for path in map(Path, args.model):
        loaded = load_backend(path, options=BackendOptions(num_threads=args.threads), require_metadata=False)
        quant = read_metadata(path).quantization if loaded.meta is not None else "?"
        key = (model_label(path, taken), loaded.name, quant)
        calls[key], runtimes[key] = loaded, loaded.describe()
    return calls, runtimes


def table(times: dict, runtimes: dict, baseline: tuple[str, str]) -> str:
    """The markdown table, with the speed-up of every row over the first row of the baseline's engine and
    precision (the first model's; the table's first row if none matches)."""
    base_key = next((k for k in times if k[1:] == baseline), next(iter(times)))
    base = float(np.median(times[base_key]))
    lines = [f"baseline: {' '.join(base_key)} ({runtimes[base_key]}), {base:.1f} ms median", "",
             "| model | engine | precision | median ms | min ms | max ms | speed-up vs baseline |",
             "|---|---|---|---|---|---|---|"]
    for (label, engine, quant), t in times.items():
        median = float(np.median(t))
        lines.append(f"| {label} | {engine} | {quant} | {median:.1f} | {t.min():.1f} | {t.max():.1f} | "
                     f"{base / median:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    from squeezedet.export import benchmark

    benchmark.configure_tf_threads(args.threads)  # before anything runs TensorFlow: its pools are sized once
    header = cpu_header(args.threads)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="engines_"))
    calls, runtimes = load_engines(args, out)
    shapes = {tuple(getattr(c, "input_shape", (1, args.size[1], args.size[0], 3))) for c in calls.values()}
    if len(shapes) != 1:
        raise SystemExit(f"engines.py: error: the models take different inputs {sorted(shapes)}; time them separately")
    x = np.random.default_rng(0).integers(0, 256, shapes.pop(), np.uint8)
    times = interleaved(calls, x, args.rounds, args.warmup)
    versions = sorted(set(runtimes.values()))
    print(f"\n{header}, {os.getloadavg()[0]:.1f} at end")
    print(f"input {x.shape[2]}x{x.shape[1]}, {args.rounds} interleaved rounds (each runs every engine once) after "
          f"{args.warmup} warm-up; runtimes: {'; '.join(versions)}\n")
    print(table(times, runtimes, args.baseline))
    rows = [{"model": k[0], "engine": k[1], "precision": k[2], "runtime": runtimes[k],
             "median_ms": float(np.median(t)), "min_ms": float(t.min()), "max_ms": float(t.max())}
            for k, t in times.items()]
    benchmark.write_results(out / "engines.json", rows, cpu=header, threads=args.threads, rounds=args.rounds,
                            input=[int(x.shape[2]), int(x.shape[1])])
    print(f"\nmodels and engines.json in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
