"""Write an EvalResult out: metrics.json (spelled-out names), a text table and precision-recall curves.

Every file is written atomically, so a dashboard polling the run folder never reads half a file.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from squeezedet.core.io import atomic_path, atomic_write_json
from squeezedet.core.kitti import KittiObject
from squeezedet.eval.kitti_eval import DIFFICULTIES, N_SAMPLE_PTS, EvalResult, evaluate

log = logging.getLogger(__name__)

METRIC_NAME = "KITTI 2D bbox AP (official devkit rules)"
METRICS_FILE = "metrics.json"
PR_CURVES_FILE = "pr_curves.png"


def _num(x: float) -> float | None:
    """JSON has no NaN: an undefined AP (no GT) becomes null."""
    return None if math.isnan(x) else round(float(x), 4)


def metrics_dict(result: EvalResult) -> dict:
    """The metrics.json content: per class x difficulty AP_R40 / AP_R11 / counts, class means, the rules."""
    return {
        "metric": METRIC_NAME,
        "ap_definitions": {
            "AP_R40": "mean interpolated precision at recall 1/40 ... 40/40, percent (KITTI leaderboard since 2019)",
            "AP_R11": "mean interpolated precision at recall 0, 0.1, ... 1.0, percent (older papers)",
        },
        "num_images": result.num_images,
        "iou_thresholds": dict(result.iou_thresholds),
        "difficulties": {
            d.name: {"min_height_px": d.min_height, "max_occlusion": d.max_occlusion,
                     "max_truncation": d.max_truncation}
            for d in DIFFICULTIES
        },
        "classes": {
            c: {
                d: {"AP_R40": _num(r.ap_r40), "AP_R11": _num(r.ap_r11), "num_gt": r.num_gt, "num_det": r.num_det}
                for d, r in per.items()
            }
            for c, per in result.results.items()
        },
        "mean": {d: {k: _num(v) for k, v in m.items()} for d, m in result.mean().items()},
    }


def write_metrics_json(result: EvalResult, path) -> Path:
    return atomic_write_json(path, metrics_dict(result))


def format_table(result: EvalResult) -> str:
    """Class x difficulty table of AP_R40 and AP_R11 (percent) with a mean row; '-' where AP is undefined."""

    def cell(x: float) -> str:
        return f"{'-' if math.isnan(x) else f'{x:.2f}':>7}"

    names = [*result.classes, "mean"]
    width = max(12, *(len(n) for n in names))
    head1 = f"{'':<{width}}" + "".join(f" | {d.name:^15}" for d in DIFFICULTIES) + " | GT (E/M/H)"
    head2 = f"{'class':<{width}}" + f" | {'AP_R40':>7} {'AP_R11':>7}" * len(DIFFICULTIES) + " |"
    lines = [f"{METRIC_NAME}, {result.num_images} images", head1, head2, "-" * len(head1)]
    for c in result.classes:
        per = result.results[c]
        aps = "".join(f" | {cell(per[d.name].ap_r40)} {cell(per[d.name].ap_r11)}" for d in DIFFICULTIES)
        counts = "/".join(str(per[d.name].num_gt) for d in DIFFICULTIES)
        lines.append(f"{c:<{width}}{aps} | {counts}")
    mean = result.mean()
    lines.append("-" * len(head1))
    aps = "".join(f" | {cell(mean[d.name]['AP_R40'])} {cell(mean[d.name]['AP_R11'])}" for d in DIFFICULTIES)
    lines.append(f"{'mean':<{width}}{aps} |")
    return "\n".join(lines)


def plot_pr_curves(result: EvalResult, path) -> Path:
    """PNG with one panel per class, the three difficulties each, drawn as the devkit plots them.

    The x axis is the devkit's recall sample point i/40 of the i-th threshold. matplotlib is imported
    here, with the Agg canvas attached directly, so evaluation runs without it and no GUI is touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(result.classes)
    fig = Figure(figsize=(4.2 * n, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    x = np.linspace(0.0, 1.0, N_SAMPLE_PTS)
    for ax, c in zip(axes, result.classes):
        for d in DIFFICULTIES:
            r = result.results[c][d.name]
            label = f"{d.name} (AP_R40 {'-' if math.isnan(r.ap_r40) else f'{r.ap_r40:.1f}'})"
            ax.plot(x, r.precision, label=label, linewidth=2)
        ax.set_title(f"{c} (IoU > {result.iou_thresholds[c]:g})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("Recall")
        ax.set_ylabel("Precision")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path


def report(result: EvalResult, output_dir) -> None:
    """Print the table; write metrics.json and (when matplotlib is installed) pr_curves.png."""
    output_dir = Path(output_dir)
    print(format_table(result))
    log.info("wrote %s", write_metrics_json(result, output_dir / METRICS_FILE))
    try:
        log.info("wrote %s", plot_pr_curves(result, output_dir / PR_CURVES_FILE))
    except ModuleNotFoundError as exc:
        if exc.name != "matplotlib":
            raise
        log.warning("matplotlib not installed: %s not written (pip install matplotlib)", PR_CURVES_FILE)


def evaluate_and_report(
    gt: Mapping[str, Sequence[KittiObject]],
    dt: Mapping[str, Sequence[KittiObject]],
    classes: Sequence[str],
    output_dir,
    iou_thresholds: Mapping[str, float] | None = None,
) -> EvalResult:
    """Evaluate in memory (image id -> objects), print the table, write metrics.json + pr_curves.png."""
    result = evaluate(gt, dt, classes, iou_thresholds)
    report(result, output_dir)
    return result
