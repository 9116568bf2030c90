"""`squeezedet prune`: a trained model -> a channel-pruned one with fewer MACs, recovered by distillation from
the original on unlabeled frames; writes DIR/model.weights.h5 + DIR/config.yaml + DIR/prune_report.json."""

from __future__ import annotations

import logging
from pathlib import Path

from squeezedet.errors import ConfigError

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "prune",
        help="remove fire-module channels down to a MAC budget, then recover by distillation on unlabeled frames",
        description="Plan the channels each fire module keeps for --macs, cut them with ThiNet's greedy selection "
        "on the next layer's reconstruction, then distil the unpruned model into the pruned one on --frames "
        "(images or videos, no labels). The output folder is an ordinary run: val, predict, export and train "
        "--init-weights use it as it is.",
    )
    p.add_argument("--weights", required=True, help="run or import folder, or a .weights.h5 with its config.yaml")
    p.add_argument("--config", help="config of --weights (default: config.yaml beside them)")
    p.add_argument("--frames", action="append", required=True,
                   help="unlabeled frames: image folder, KITTI folder or video file (repeatable)")
    p.add_argument("--frames-split", help="split of a KITTI --frames folder (default: every image)")
    p.add_argument("--every", type=int, default=1, help="take every N-th frame or image (default 1)")
    p.add_argument("--macs", type=float, default=0.6, help="fraction of the full model's MACs to keep (default 0.6)")
    p.add_argument("--plan", choices=("sensitivity", "uniform"), default="sensitivity",
                   help="channels per layer: where the error grows least per MAC (default), or the same ratio")
    p.add_argument("--multiple", type=int, default=8, help="channel counts are multiples of this (default 8)")
    p.add_argument("--keep", default="", help="fire modules left whole, comma-separated (e.g. fire2,fire3)")
    p.add_argument("--select-frames", type=int, default=32, help="frames the channel choice is measured on")
    p.add_argument("--no-rescale", action="store_true", help="no least-squares rescale of the next layer")
    p.add_argument("--steps", type=int, default=1000, help="distillation steps (0 = cut only; default 1000)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate, cosine decay (default 3e-4)")
    p.add_argument("--data", help="labelled KITTI folder: Car AP before/after and the held-out gap")
    p.add_argument("--split", default="val.txt", help="split of --data (default val.txt)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True, help="folder to write (created)")
    p.set_defaults(func=run)


def _settings(args):
    from squeezedet.train.prune_run import PruneSettings

    checks = {"--macs": 0 < args.macs <= 1, "--multiple": args.multiple >= 1, "--every": args.every >= 1,
              "--steps": args.steps >= 0, "--batch-size": args.batch_size >= 1, "--lr": args.lr > 0,
              "--select-frames": args.select_frames >= 1}
    bad = [flag for flag, ok in checks.items() if not ok]
    if bad:
        raise ConfigError(f"{bad[0]} {getattr(args, bad[0][2:].replace('-', '_'))}: out of range "
                          "(--macs in (0, 1], counts >= 1, --steps >= 0, --lr > 0)")
    keep = tuple(f for f in args.keep.split(",") if f.strip())
    return PruneSettings(macs=args.macs, plan=args.plan, multiple=args.multiple, keep=keep,
                         select_frames=args.select_frames, rescale=not args.no_rescale, steps=args.steps,
                         batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed, data=args.data,
                         split=args.split)


def format_report(report: dict) -> str:
    """The printed summary: MACs, parameters, channels per fire module, teacher gap and Car AP."""
    macs, params = report["macs"], report["params"]
    lines = [f"MACs   {macs['full'] / 1e9:.3f} G -> {macs['pruned'] / 1e9:.3f} G ({100 * macs['fraction']:.1f} %)",
             f"params {params['full']:,} -> {params['pruned']:,} ({100 * params['pruned'] / params['full']:.1f} %)",
             "", f"{'fire':8}{'squeeze':>16}{'expand 1x1':>16}{'expand 3x3':>16}"]
    for fire, ch in report["layers"].items():
        lines.append(f"{fire:8}" + "".join(f"{f'{a} -> {b}':>16}" for a, b in zip(ch["full"], ch["pruned"])))
    gap = report["teacher_gap"]
    lines += ["", f"teacher-student gap on {gap['frames']} (distillation loss, 0 = identical):"]
    lines += [f"  {stage:10} {terms['total']:.4f}  (soft class {terms['soft_class']:.4f}, confidence "
              f"{terms['conf_hint']:.4f}, box {terms['box_hint']:.4f})"
              for stage, terms in gap.items() if stage != "frames"]
    if report.get("car_ap_r40"):
        lines += ["", f"Car AP_R40 {'easy':>8}{'moderate':>10}{'hard':>8}"]
        lines += [f"  {stage:10}" + "".join(f"{ap[d]:>{w}.2f}" for d, w in (("easy", 6), ("moderate", 10), ("hard", 8)))
                  for stage, ap in report["car_ap_r40"].items()]
    return "\n".join(lines)


def run(args) -> int:
    import sys

    import numpy as np
    from tqdm import tqdm

    from squeezedet.export.graph import load_inference_model
    from squeezedet.inference import config_for_weights
    from squeezedet.train.init_weights import resolve_init_weights
    from squeezedet.train.prune_run import prune_and_recover, write_run
    from squeezedet.train.recovery import read_frames

    settings = _settings(args)
    weights = resolve_init_weights(args.weights)
    cfg = config_for_weights(weights, args.config)
    frames = np.concatenate([read_frames(src, cfg.model.input_size, args.every, args.frames_split)
                             for src in args.frames])
    log.info("%d unlabeled frames from %s", len(frames), ", ".join(args.frames))
    teacher = load_inference_model(cfg.model, weights)
    output = Path(args.output)
    bars = []  # made at the first layer, so an early error stays one line

    def progress(name: str) -> None:
        if not bars:
            bars.append(tqdm(desc="prune", unit="layer"))
        bars[0].set_postfix_str(name)
        bars[0].update()

    result = prune_and_recover(teacher, cfg, frames, settings, output, verbose=1 if sys.stdout.isatty() else 2,
                               progress=progress)
    for bar in bars:
        bar.close()
    result.report["source"] = str(weights)
    result.report["frame_sources"] = list(args.frames)
    write_run(result, output)
    print(format_report(result.report))
    print(f"wrote {output / 'model.weights.h5'}, config.yaml, prune_report.json")
    return 0
