"""Training callbacks: NaN guard, checkpoints (best/last + resumable optimizer state), validation
mAP, throughput, and the metrics JSON/PNG a person looks at after a run."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import keras
import numpy as np

from squeezedet.core.io import atomic_path, atomic_write_json
from squeezedet.errors import SqueezeDetError

log = logging.getLogger(__name__)


class TrainingDiverged(SqueezeDetError):
    """Loss became NaN/inf: stop with a message that says where and what to try."""


class NaNGuard(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            raise TrainingDiverged(
                f"loss became {loss} at epoch {self.epoch + 1}, batch {batch + 1}: lower train.learning_rate "
                "or train.clip_norm, or check the labels of this split (the last checkpoint is kept)"
            )


class Throughput(keras.callbacks.Callback):
    """Images per second over all training batches but the first (graph tracing)."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.images = 0
        self.seconds = 0.0
        self._t = None
        self._first = True

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._t is None:
            return
        dt = time.perf_counter() - self._t
        if self._first:
            self._first = False
            return
        self.images += self.batch_size
        self.seconds += dt

    @property
    def images_per_sec(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def save_optimizer_state(optimizer, path) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, *[keras.ops.convert_to_numpy(v) for v in optimizer.variables])


def load_optimizer_state(optimizer, model, path) -> None:
    optimizer.build(model.trainable_variables)
    try:
        with np.load(path) as data:
            arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    except (OSError, ValueError, KeyError) as exc:
        raise SqueezeDetError(f"{path}: cannot read the optimizer state to resume ({exc})") from None
    if len(arrays) != len(optimizer.variables):
        raise SqueezeDetError(f"{path}: optimizer state has {len(arrays)} variables, expected {len(optimizer.variables)}")
    for var, arr in zip(optimizer.variables, arrays):
        var.assign(arr)


class Checkpointer(keras.callbacks.Callback):
    """Writes ``last.weights.h5`` (+ optimizer state + state.json) each epoch and ``best.weights.h5``
    whenever the monitored value improves; all atomically, so a crash never leaves half a file."""

    def __init__(self, output_dir, monitor: str, mode: str, save_model=None, history: list | None = None,
                 best_value: float | None = None):
        super().__init__()
        self.dir = Path(output_dir)
        self.monitor = monitor
        self.mode = mode
        self.best = best_value
        self.history = history if history is not None else []
        self.save_model = save_model  # the model whose weights are saved (student under distillation)

    def _improved(self, value) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.history.append({"epoch": epoch + 1, **logs})
        model = self.save_model or self.model
        with atomic_path(self.dir / "last.weights.h5", suffix=".weights.h5") as tmp:
            model.save_weights(str(tmp))
        save_optimizer_state(self.model.optimizer, self.dir / "last.optimizer.npz")
        value = logs.get(self.monitor)
        if self._improved(value):
            self.best = value
            with atomic_path(self.dir / "best.weights.h5", suffix=".weights.h5") as tmp:
                model.save_weights(str(tmp))
            log.info("epoch %d: %s improved to %.4f, saved best.weights.h5", epoch + 1, self.monitor, value)
        atomic_write_json(
            self.dir / "state.json",
            {"epoch": epoch + 1, "monitor": self.monitor, "mode": self.mode, "best": self.best,
             "history": self.history},
        )


class Validation(keras.callbacks.Callback):
    """Every ``every`` epochs: predict the val split, evaluate with the KITTI evaluator, log mAP."""

    def __init__(self, cfg, samples, every: int, output_dir, predict_model=None):
        super().__init__()
        self.cfg = cfg
        self.samples = samples
        self.every = every
        self.output_dir = Path(output_dir)
        self.predict_model = predict_model

    def on_epoch_end(self, epoch, logs=None):
        if not self.every or (epoch + 1) % self.every:
            return
        from squeezedet.eval.validate import validate_model

        res = validate_model(self.cfg, self.predict_model or self.model, self.samples, self.output_dir / "val_latest")
        value = res.mean()["moderate"]["AP_R40"]
        if logs is not None:
            logs["val_mAP_moderate_R40"] = value
        log.info("epoch %d: val mAP (moderate, AP_R40) = %.2f", epoch + 1, value)


def write_training_report(output_dir, history: list, summary: dict) -> None:
    """metrics.json (history + summary) and training_curves.png."""
    out = Path(output_dir)
    atomic_write_json(out / "train_metrics.json", {"summary": summary, "history": history})
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seen = set().union(*history)
    keys = [k for k in ("loss", "class_loss", "conf_loss", "bbox_loss", "val_mAP_moderate_R40") if k in seen]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(h["epoch"], h[key]) for h in history if key in h]
        ax.plot([e for e, _ in points], [v for _, v in points], marker=".")
        ax.set_title(key)
        ax.set_xlabel("epoch")
        if key != "val_mAP_moderate_R40":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out / "training_curves.png", suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def load_state(output_dir) -> dict | None:
    p = Path(output_dir) / "state.json"
    if not p.is_file():
        return None
    try:
        state = json.loads(p.read_text())
        int(state["epoch"]), list(state["history"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SqueezeDetError(f"{p}: not a usable training state ({exc}); remove it to start afresh") from None
    return state
