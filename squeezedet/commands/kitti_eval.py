"""`squeezedet kitti-eval`: score KITTI result files with the official devkit rules."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from squeezedet.core.kitti import read_split
from squeezedet.errors import DataError
from squeezedet.eval.kitti_eval import DEFAULT_CLASSES, evaluate_folders
from squeezedet.eval.report import report


def register(sub) -> None:
    p = sub.add_parser(
        "kitti-eval",
        help="KITTI 2D AP (official devkit rules) of a folder of result files",
        description="Evaluate KITTI result files (one <id>.txt per image, 16 fields a line) against labels; "
        "prints AP_R40 / AP_R11 per class and difficulty, writes metrics.json and pr_curves.png.",
    )
    p.add_argument("label_dir", metavar="LABEL_DIR", type=Path,
                   help="label_2 folder, or a KITTI root holding training/label_2 or label_2")
    p.add_argument("result_dir", metavar="RESULT_DIR", type=Path, help="folder of <id>.txt result files")
    p.add_argument("--split", help="file of image ids to evaluate (a path, or a name under the KITTI root); "
                   "default: every result file; ids without a result file count as no detections")
    p.add_argument("--classes", nargs="+", default=list(DEFAULT_CLASSES),
                   help="KITTI types to score (default: Car Pedestrian Cyclist)")
    p.add_argument("--iou", nargs="+", default=[], metavar="CLASS=THR",
                   help="override IoU thresholds, e.g. Car=0.5 (default: Car 0.7, others 0.5)")
    p.add_argument("--output", type=Path, help="where metrics.json and pr_curves.png go (default: RESULT_DIR/..)")
    p.set_defaults(func=run)


def run(args) -> int:
    from squeezedet.data.kitti_dataset import resolve_split

    label_dir, kitti_root = _label_dir(args.label_dir)
    ids = read_split(resolve_split(kitti_root, args.split)) if args.split else None
    iou = _parse_iou(args.iou)
    result = evaluate_folders(label_dir, args.result_dir, ids=ids, classes=args.classes, iou_thresholds=iou)
    report(result, args.output or args.result_dir.resolve().parent)
    return 0


def _label_dir(path: Path) -> tuple[Path, Path]:
    """(label folder, KITTI root for split names) from a label folder or a KITTI root."""
    for labels in (path / "training" / "label_2", path / "label_2"):
        if labels.is_dir():
            return labels, path
    if not path.is_dir():
        raise DataError(f"{path}: label folder not found")
    parent = path.resolve().parent
    return path, parent.parent if parent.name == "training" else parent


def _parse_iou(items: Sequence[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            name = ""
        if not name:
            raise DataError(f"--iou {item!r}: expected CLASS=THRESHOLD, e.g. Car=0.7")
    return out
