"""Does this CPU run int8 convolutions faster than float32 ones? Raw LiteRT throughput (GMAC/s) of one
large conv block (1x1 then 3x3, 256 channels, 312x96), converted to fp32 and to full int8.

It bounds what quantization can buy on the host: SqueezeDet int8 cannot beat its MACs divided by the
int8 figure. With int8 dot-product instructions (ARM sdot, x86 VNNI) int8 should come out well ahead;
on AVX2 alone the two are close.

    python benchmarks/int8_kernel_speed.py [--threads 1,2] [--runs 10]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

H, W, C = 96, 312, 256


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--runs", type=int, default=10)
    return p.parse_args(argv)


def conv_block_models() -> dict[str, bytes]:
    import keras
    import tensorflow as tf

    inp = keras.Input((H, W, C), batch_size=1)
    x = keras.layers.Conv2D(C, 1, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Conv2D(C, 3, padding="same", activation="relu")(x))
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(4):
            yield [rng.random((1, H, W, C), np.float32)]

    fp32 = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    return {"fp32": fp32, "int8": conv.convert()}


def main(argv=None) -> int:
    args = parse_args(argv)
    from squeezedet.core.runtime import interpreter_from_bytes, runtime_name
    from squeezedet.export.benchmark import host_info, time_calls

    macs = H * W * C * C * (1 + 9)
    rows = []
    for name, data in conv_block_models().items():
        for threads in (int(t) for t in args.threads.split(",")):
            interp = interpreter_from_bytes(data, threads, label=f"{name} conv block")
            inp = interp.get_input_details()[0]
            interp.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
            ms = float(np.median(time_calls(interp.invoke, args.runs, 3)))
            rows.append((name, threads, ms, macs / ms / 1e6))
    print(f"\nconv block {W}x{H}x{C}, 1x1 + 3x3, {macs / 1e9:.2f} GMACs, {runtime_name()}; host {host_info()}\n")
    print("| model | threads | median ms | GMAC/s |")
    print("|---|---|---|---|")
    for name, threads, ms, rate in rows:
        print(f"| {name} | {threads} | {ms:.1f} | {rate:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
