"""``squeezedet prune`` end to end: plan a channel layout for a MAC budget, cut the channels (ThiNet), recover
by distillation from the unpruned model on unlabeled frames, measure, and write a run folder that
``val``, ``predict``, ``export`` and ``train --init-weights`` take as it is.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from squeezedet.errors import ConfigError

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.weights.h5"
CONFIG_FILE = "config.yaml"
REPORT_FILE = "prune_report.json"
DIFFICULTIES = ("easy", "moderate", "hard")


@dataclass
class PruneSettings:
    """What ``squeezedet prune`` was asked for (its flags)."""

    macs: float = 0.6  #: fraction of the full model's MACs to keep
    plan: str = "sensitivity"  #: "sensitivity" or "uniform" (squeezedet.train.prune_budget)
    multiple: int = 8  #: channel counts are multiples of this
    keep: tuple[str, ...] = ()  #: fire modules left whole
    select_frames: int = 32  #: frames the channel choice is measured on
    positions: int = 256  #: sample positions per frame and layer
    rescale: bool = True  #: least-squares rescale of the next layer
    steps: int = 1000  #: recovery steps (0 = none)
    batch_size: int = 4
    learning_rate: float = 3e-4
    seed: int = 0
    data: str | None = None  #: labelled KITTI folder: AP before/after and the held-out gap
    split: str = "val.txt"


@dataclass
class PruneResult:
    config: object  #: the pruned model's Config
    model: object  #: the recovered Keras model
    report: dict = field(default_factory=dict)


def _spread(frames: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` frames spread over the set (all when there are fewer)."""
    if len(frames) <= count:
        return frames
    return frames[np.sort(np.random.default_rng(seed).choice(len(frames), count, replace=False))]


def plan(model, cfg, frames: np.ndarray, s: PruneSettings, progress=None) -> dict:
    """The channel layout to cut to (prune_budget's plans); the sensitivity plan measures its curves here."""
    from squeezedet.train import filter_pruning, prune_budget

    unknown = sorted(set(s.keep) - set(cfg.model.fire_layout()))
    if unknown:
        raise ConfigError(f"--keep: {', '.join(unknown)} not a fire module of {cfg.model.architecture}")
    layout, count = cfg.model.fire_layout(), prune_budget.MacCounter.of(model)
    try:
        prune_budget.check_budget(count, layout, s.macs, s.multiple, s.keep)
        if s.plan == "uniform":
            return prune_budget.uniform_plan(count, layout, s.macs, s.multiple, s.keep)
        curves = filter_pruning.sensitivity_curves(model, layout, frames, s.positions, s.seed, progress)
        return prune_budget.sensitivity_plan(count, layout, curves, s.macs, s.multiple, s.keep)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def car_ap(cfg, model, samples, out: Path) -> dict | None:
    """Car easy/moderate/hard AP_R40 of an in-memory model on labelled samples (files under ``out``)."""
    if not samples:
        return None
    from squeezedet.eval.validate import validate_model

    result = validate_model(cfg, model, samples, out)
    return {d: round(float(result.results["Car"][d].ap_r40), 2) for d in DIFFICULTIES}


def _labelled(cfg, s: PruneSettings) -> list:
    if not s.data:
        return []
    from squeezedet.data.kitti_dataset import load_samples

    if "car" not in cfg.model.classes:
        raise ConfigError(f"--data: the report's AP is Car's, and model.classes {cfg.model.classes} has no car")
    return load_samples(s.data, s.split, cfg.model.classes, cfg.data.class_map)


def prune_and_recover(teacher, cfg, frames: np.ndarray, s: PruneSettings, output: Path, verbose: int = 1,
                      progress=None) -> PruneResult:
    """Plan, cut, recover and measure; nothing is written but the evaluations under ``output/eval``."""
    from squeezedet.model.squeezedet import count_macs, count_params
    from squeezedet.train import filter_pruning, recovery

    samples = _labelled(cfg, s)
    chosen = _spread(frames, s.select_frames, s.seed)
    target = plan(teacher, cfg, chosen, s, progress)
    t0 = time.perf_counter()
    pruned, model_cfg, cuts = filter_pruning.prune_model(teacher, cfg.model, chosen, target, s.positions, s.seed,
                                                         s.rescale, progress)
    new_cfg = cfg.model_copy(update={"model": model_cfg})
    cut_seconds = time.perf_counter() - t0
    held_out = (recovery.read_frames(s.data, cfg.model.input_size, split=s.split) if samples else frames)
    distiller = recovery.make_distiller(pruned, teacher, cfg)
    gap = {"frames": f"{s.data} ({s.split})" if samples else "the unlabeled frames",
           "pruned": recovery.teacher_gap(distiller, held_out)}
    ap = {"full": car_ap(cfg, teacher, samples, output / "eval" / "full"),
          "pruned": car_ap(new_cfg, pruned, samples, output / "eval" / "pruned")}
    history, t0 = [], time.perf_counter()
    if s.steps:
        history = recovery.recover(distiller, frames, s.steps, s.batch_size, s.learning_rate, s.seed, verbose)
        gap["recovered"] = recovery.teacher_gap(distiller, held_out)
        ap["recovered"] = car_ap(new_cfg, pruned, samples, output / "eval" / "recovered")
    full, small = cfg.model.fire_layout(), model_cfg.fire_layout()
    report = {
        "macs": {"full": count_macs(teacher), "pruned": count_macs(pruned),
                 "fraction": round(count_macs(pruned) / count_macs(teacher), 4), "target": s.macs},
        "params": {"full": count_params(teacher), "pruned": count_params(pruned)},
        "layers": {f: {"full": list(full[f]), "pruned": list(small[f])} for f in full},
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(s).items()},
        "frames": len(frames), "cuts": cuts, "cut_seconds": round(cut_seconds, 1),
        "recovery": {"seconds": round(time.perf_counter() - t0, 1), "history": history},
        "teacher_gap": gap, "car_ap_r40": ap if samples else None,
    }
    return PruneResult(new_cfg, pruned, report)


def write_run(result: PruneResult, output: Path) -> None:
    """model.weights.h5, config.yaml and prune_report.json, each written atomically."""
    from squeezedet.config import save_config
    from squeezedet.core.io import atomic_path, atomic_write_json

    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(output / WEIGHTS_FILE, suffix=".weights.h5") as tmp:
        result.model.save_weights(str(tmp))
    save_config(result.config, output / CONFIG_FILE)
    atomic_write_json(output / REPORT_FILE, result.report)
