"""Train SqueezeDet: data, model, loss, optimizer, distribution strategy and callbacks in one place.

Multi-GPU and multi-host scaling come from tf.distribute (MirroredStrategy / MultiWorkerMirrored,
chosen from the visible GPUs and TF_CONFIG); mixed precision turns on with a GPU.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import tensorflow as tf

from squeezedet.config import Config, save_config
from squeezedet.core.kitti import KITTI_TYPES, kitti_name_for
from squeezedet.data.kitti_dataset import load_samples, resolve_split
from squeezedet.data.pipeline import make_dataset
from squeezedet.errors import ConfigError, DataError
from squeezedet.inference import load_weights
from squeezedet.model import build_model, count_params
from squeezedet.model.pretrained import load_pretrained_backbone
from squeezedet.train import callbacks as cb
from squeezedet.train.init_weights import apply_freeze, init_from_trained
from squeezedet.train.loss import global_sums, loss_from_config, multi_replica_context, replicas_in_sync
from squeezedet.train.schedules import WarmupDecay

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    output_dir: Path
    epochs_run: int
    steps: int
    images_per_sec: float | None  # None when too few batches ran to time one
    final_loss: float
    history: list = field(default_factory=list)
    replicas: int = 1
    precision: str = "float32"
    chief: bool = True  #: False on the other workers of a multi-host run: output_dir was scratch, now removed

    @property
    def best_weights(self) -> Path:
        return self.output_dir / "best.weights.h5"

    @property
    def last_weights(self) -> Path:
        return self.output_dir / "last.weights.h5"


def select_strategy(kind: str) -> tf.distribute.Strategy:
    gpus = tf.config.list_physical_devices("GPU")
    if kind == "multi_worker" or (kind == "auto" and os.environ.get("TF_CONFIG")):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored" or (kind == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Only one worker of a multi-host run writes checkpoints, logs and metrics (the chief, else worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)


def configure_precision(mode: str) -> str:
    gpus = tf.config.list_physical_devices("GPU")
    policy = "mixed_float16" if mode == "on" or (mode == "auto" and gpus) else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def patch_keras_for_multi_worker(model: keras.Model, dataset: tf.data.Dataset, strategy) -> None:
    """Work around Keras 3's fit() under MultiWorkerMirroredStrategy (keras-team/keras#20585,
    tensorflow/tensorflow#72388; still open in Keras 3.15), so several hosts can train:

    * fit() builds the training state by averaging a first batch over all replicas, a cross-host
      reduce of a distributed batch that fails: build it from the dataset's shapes and dtypes instead;
    * each step's logs are averaged across hosts along axis 0, which scalars do not have: average
      them as scalars.

    Both touch Keras internals; a Keras without them is left alone, with a warning.
    tests/test_train_strategies.py runs two worker processes on loopback and checks the update."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer

    needed = (hasattr(model, "_symbolic_build"), hasattr(keras_tf_trainer, "reduce_per_replica"))
    if not all(needed):
        log.warning("unknown Keras internals: multi-worker fit() is left to Keras as it is")
        return
    with strategy.scope():
        model._symbolic_build(data_batch=dataset.element_spec)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    original = getattr(keras_tf_trainer.reduce_per_replica, "__wrapped__", keras_tf_trainer.reduce_per_replica)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.__wrapped__ = original
    keras_tf_trainer.reduce_per_replica = reduce_per_replica


def _loss_metric(loss, part):
    """A logged loss term: the replica's share times the replica count, which Keras averages over
    replicas into the global-batch value."""

    def metric(y_true, y_pred):
        return loss.components(y_true, y_pred)[part] * float(replicas_in_sync())

    metric.__name__ = part
    return metric


class GlobalClipSGD(keras.optimizers.SGD):
    """SGD whose global-norm clipping sees the gradient of the whole global batch.

    Keras 3 clips each replica's gradient before the replicas' gradients are summed, so N replicas
    would clip at up to N x clip_norm and N GPUs would train differently from one whenever clipping
    is active (early in training, it is). Here the replicas' gradients are summed first, clipped, and
    handed on divided by N; Keras' own sum then restores exactly the clipped total."""

    def _clip_gradients(self, grads):
        ctx = multi_replica_context()
        if not self.global_clipnorm or ctx is None:
            return super()._clip_gradients(grads)
        present = [i for i, g in enumerate(grads) if g is not None]
        clipped, _ = tf.clip_by_global_norm(list(global_sums(*(grads[i] for i in present))), self.global_clipnorm)
        out = list(grads)
        for i, g in zip(present, clipped):
            out[i] = g / tf.cast(ctx.num_replicas_in_sync, g.dtype)
        return out


def build_optimizer(cfg: Config, total_steps: int) -> keras.optimizers.Optimizer:
    t = cfg.train
    schedule = WarmupDecay(t.learning_rate, t.warmup_steps, total_steps, t.lr_decay, t.lr_decay_steps, t.lr_decay_factor)
    opt = GlobalClipSGD(
        learning_rate=schedule, momentum=t.momentum, weight_decay=t.weight_decay or None, global_clipnorm=t.clip_norm
    )
    if t.weight_decay:
        opt.exclude_from_weight_decay(var_names=["bias"])
    return opt


def load_splits(cfg: Config, root) -> tuple[list, list]:
    """Training samples (hard objects left out when configured) and, when validating, the val samples."""
    t = cfg.train
    train_samples = load_samples(
        root, cfg.data.train_split, cfg.model.classes, cfg.data.class_map, exclude_hard=cfg.data.exclude_hard_examples
    )
    val_samples = []
    if t.val_every:
        not_kitti = [c for c in cfg.model.classes if kitti_name_for(c) not in KITTI_TYPES]
        if not_kitti:
            raise ConfigError(f"model.classes {not_kitti} are not KITTI types, so the KITTI evaluator cannot "
                              "validate them: set train.val_every: 0")
        try:
            resolve_split(root, cfg.data.val_split)
        except DataError as exc:
            raise ConfigError(f"{exc} (needed for validation: set data.val_split, or train.val_every: 0)") from None
        val_samples = load_samples(root, cfg.data.val_split, cfg.model.classes, cfg.data.class_map)
    n_boxes = sum(len(s.boxes) for s in train_samples)
    log.info("data: %s, %d train images (%d boxes), %d val images", root, len(train_samples), n_boxes, len(val_samples))
    return train_samples, val_samples


def resume_state(out: Path, resume: bool, epochs: int) -> dict | None:
    """state.json of an earlier run when resuming (None otherwise); a resume that cannot continue is an error."""
    state = cb.load_state(out) if resume else None
    if resume and state is None:
        raise ConfigError(f"{out}: --resume given but no state.json from an earlier run")
    if state and state["epoch"] >= epochs:
        raise ConfigError(f"{out}: already trained {state['epoch']} epochs: pass --epochs greater than {state['epoch']}")
    return state


def build_fit_model(cfg: Config, out: Path, state, init_weights, teacher_weights, teacher_config, total_steps: int):
    """(model, the model ``fit`` runs) under the current strategy's scope: weights from the resume state,
    a trained detector or the ImageNet backbone; frozen layers; loss, optimizer, metrics compiled in
    (a distiller around the model when a teacher is given)."""
    t = cfg.train
    model = build_model(cfg.model)
    if state:
        load_weights(model, out / "last.weights.h5")
    elif init_weights:
        init_from_trained(model, cfg, init_weights)
    elif cfg.model.pretrained_backbone:
        load_pretrained_backbone(model, cfg.model.pretrained_backbone)
    apply_freeze(model, t.freeze)
    loss = loss_from_config(cfg, cfg.model.anchors())
    optimizer = build_optimizer(cfg, total_steps)
    fit_model = model
    if teacher_weights:
        from squeezedet.train.distill import build_distiller

        teacher = build_model((teacher_config or cfg).model, training_dropout=False)
        load_weights(teacher, teacher_weights)
        fit_model = build_distiller(model, teacher, cfg, cfg.model.anchors())
        fit_model.compile(optimizer=optimizer)
    else:
        metrics = [_loss_metric(loss, p) for p in ("class_loss", "conf_loss", "bbox_loss")]
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    if state:
        cb.load_optimizer_state(fit_model.optimizer, fit_model, out / "last.optimizer.npz")
        log.info("resumed from %s at epoch %d", out, state["epoch"])
    return model, fit_model


def build_callbacks(cfg: Config, out: Path, model, val_samples, state, history: list):
    """NaN guard, throughput, validation, pruning, checkpoints and TensorBoard, in the order they must run."""
    t = cfg.train
    monitor, mode = ("val_mAP_moderate_R40", "max") if val_samples else ("loss", "min")
    throughput = cb.Throughput(t.batch_size)
    callbacks = [cb.NaNGuard(), throughput]
    if val_samples:
        callbacks.append(cb.Validation(cfg, val_samples, t.val_every, out, predict_model=model))
    if t.prune_final_sparsity > 0:
        from squeezedet.train.pruning import MagnitudePruning

        callbacks.append(MagnitudePruning.from_config(t))
    checkpointer = cb.Checkpointer(out, monitor, mode, save_model=model, history=history,
                                   best_value=state.get("best") if state else None)
    callbacks += [
        checkpointer,
        keras.callbacks.TensorBoard(str(out / "tensorboard"), update_freq="epoch", write_graph=False),
    ]
    return callbacks, throughput, checkpointer


def train(
    cfg: Config,
    output_dir,
    data_root=None,
    epochs: int | None = None,
    resume: bool = False,
    teacher_weights=None,
    teacher_config: Config | None = None,
    verbose: int | None = None,
    init_weights=None,
) -> TrainResult:
    """Train per ``cfg``; checkpoints, logs and metrics go to ``output_dir``."""
    out = Path(output_dir)
    root = data_root or cfg.data.root
    if not root:
        raise ConfigError("no data folder: pass --data or set data.root")
    epochs = epochs or cfg.train.epochs
    t = cfg.train
    keras.utils.set_random_seed(t.seed)
    policy = configure_precision(t.mixed_precision)
    strategy = select_strategy(t.distribution)

    train_samples, val_samples = load_splits(cfg, root)
    steps = t.steps_per_epoch or max(1, math.ceil(len(train_samples) / t.batch_size))
    total_steps = steps * epochs
    state = resume_state(out, resume, epochs)
    initial_epoch = state["epoch"] if state else 0

    chief = is_chief(strategy)
    if not chief:  # other workers write their (identical) copies to a scratch folder, removed at the end
        out = Path(tempfile.mkdtemp(prefix="squeezedet-worker-"))
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    ds = make_dataset(cfg, train_samples, t.batch_size, training=True, seed=t.seed)
    with strategy.scope():
        model, fit_model = build_fit_model(cfg, out, state, init_weights, teacher_weights, teacher_config, total_steps)
    log.info(
        "model %s: %s params, input %dx%d, %d anchors, precision %s, %d replica(s)",
        cfg.model.architecture, f"{count_params(model):,}", *cfg.model.input_size, len(cfg.model.anchors()), policy,
        strategy.num_replicas_in_sync,
    )
    history = list(state["history"]) if state else []
    callbacks, throughput, checkpointer = build_callbacks(cfg, out, model, val_samples, state, history)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    patch_keras_for_multi_worker(fit_model, ds, strategy)
    t0 = time.perf_counter()
    fit_model.fit(ds, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps, callbacks=callbacks, shuffle=False,
                  verbose=verbose)
    wall = time.perf_counter() - t0
    ips = throughput.images_per_sec
    ips = None if math.isnan(ips) else ips
    final_loss = history[-1]["loss"] if history else float("nan")
    summary = {
        "epochs": epochs,
        "steps_per_epoch": steps,
        "batch_size": t.batch_size,
        "input_size": list(cfg.model.input_size),
        "images_per_sec": ips,
        "wall_seconds": wall,
        "final_loss": final_loss,
        "best": {"monitor": checkpointer.monitor, "value": checkpointer.best},
        "precision": policy,
        "replicas": strategy.num_replicas_in_sync,
    }
    cb.write_training_report(out, history, summary)
    log.info("trained %d epochs x %d steps in %.0f s: %s images/s; weights in %s", epochs - initial_epoch, steps,
             wall, f"{ips:.2f}" if ips else "n/a", out)
    print(json.dumps({"images_per_sec": round(ips, 2) if ips else None, "final_loss": final_loss, "output": str(out)}))
    if not chief:
        shutil.rmtree(out, ignore_errors=True)
    return TrainResult(out, epochs - initial_epoch, steps * (epochs - initial_epoch), ips, final_loss, history,
                       strategy.num_replicas_in_sync, policy, chief)
