"""`squeezedet train`: train from a YAML config on a KITTI folder."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("train", help="train SqueezeDet on a KITTI-format folder")
    p.add_argument("--config", required=True, help="YAML config (see configs/)")
    p.add_argument("--data", help="KITTI folder (overrides data.root)")
    p.add_argument("--epochs", type=int, help="overrides train.epochs")
    p.add_argument("--steps-per-epoch", type=int, help="overrides train.steps_per_epoch")
    p.add_argument("--batch-size", type=int, help="overrides train.batch_size")
    p.add_argument("--pretrained", help="local SqueezeNet v1.1 .h5 (overrides model.pretrained_backbone)")
    p.add_argument("--init-weights", help="start from a trained detector: a run/import folder or .weights.h5 "
                   "(every layer, the ConvDet head too when classes and anchors match)")
    p.add_argument("--output", default="runs/train", help="checkpoints, logs, metrics (default: runs/train)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/last.weights.h5 and state.json")
    p.add_argument("--teacher", help="distil from this SqueezeDet+ (or any) teacher .weights.h5")
    p.add_argument("--teacher-config", help="teacher's config (default: config.yaml next to --teacher)")
    p.set_defaults(func=run)


def run(args) -> int:
    from squeezedet.config import load_config

    overrides = {}
    for key, value in (
        ("train.epochs", args.epochs),
        ("train.steps_per_epoch", args.steps_per_epoch),
        ("train.batch_size", args.batch_size),
        ("model.pretrained_backbone", args.pretrained),
        ("data.root", args.data),
    ):
        if value is not None:
            overrides[key] = value
    cfg = load_config(args.config, overrides)
    teacher_cfg = None
    if args.teacher:
        from squeezedet.inference import config_for_weights

        teacher_cfg = config_for_weights(args.teacher, args.teacher_config)
    # Imported late: TensorFlow start-up is slow and the config errors above should come first.
    from squeezedet.train.trainer import train

    train(
        cfg,
        Path(args.output),
        resume=args.resume,
        teacher_weights=args.teacher,
        teacher_config=teacher_cfg,
        init_weights=args.init_weights,
    )
    return 0
