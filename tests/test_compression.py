"""Compression while fine-tuning: magnitude pruning (schedule, masks, what it buys after gzip) and
knowledge distillation from a SqueezeDet+ teacher (only the student learns)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from squeezedet.config import Config
from squeezedet.core.anchors import (
    DEFAULT_KITTI_ANCHOR_SHAPES,
    anchor_grid,
    scale_anchor_shapes,
)
from squeezedet.data.targets import encode_targets
from squeezedet.errors import ConfigError
from squeezedet.model import build_model
from squeezedet.train.loss import loss_from_config
from squeezedet.train.pruning import (
    MagnitudePruning,
    gzip_size,
    polynomial_sparsity,
    sparsity_report,
)

W, H, BATCH = 128, 64, 2


def tiny_config(architecture: str = "squeezedet") -> Config:
    cfg = Config()
    cfg.model.architecture = architecture
    cfg.model.input_width, cfg.model.input_height, cfg.model.dropout = W, H, 0.0
    shapes = scale_anchor_shapes(DEFAULT_KITTI_ANCHOR_SHAPES, (1248, 384), (W, H))
    cfg.model.anchor_shapes = [tuple(map(float, a)) for a in shapes]
    return cfg


def batch(cfg: Config, seed: int = 0):
    """Random uint8 frames with two boxes each, and their dense training targets."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (BATCH, H, W, 3), dtype=np.uint8)
    anchors = anchor_grid(W, H, cfg.model.anchor_shapes)
    boxes = np.array([[10, 20, 40, 50], [70, 10, 120, 45]], np.float32)
    y = np.stack([encode_targets(boxes, np.array([0, 1]), anchors, len(cfg.model.classes))] * BATCH)
    return x, y


def test_polynomial_sparsity_schedule():
    assert polynomial_sparsity(5, 0.6, begin=10, end=110) == 0.0
    assert polynomial_sparsity(10, 0.6, begin=10, end=110) == 0.0
    assert polynomial_sparsity(60, 0.6, begin=10, end=110) == pytest.approx(0.6 * (1 - 0.5**3))
    assert polynomial_sparsity(110, 0.6, begin=10, end=110) == pytest.approx(0.6)
    assert polynomial_sparsity(500, 0.6, begin=10, end=110) == pytest.approx(0.6)
    steps = [polynomial_sparsity(s, 0.6, 10, 110) for s in range(120)]
    assert steps == sorted(steps)
    train = Config().train.model_copy(update={"prune_final_sparsity": 0.7, "prune_begin_step": 3, "prune_end_step": 9})
    cb = MagnitudePruning.from_config(train)
    assert (cb.final_sparsity, cb.begin_step, cb.end_step) == (0.7, 3, 9)
    with pytest.raises(ValueError):
        MagnitudePruning(0.5, begin_step=10, end_step=10)


@pytest.fixture(scope="module")
def pruned():
    """A tiny model fine-tuned 8 steps with pruning to 50 % (schedule ends at step 6), and its start weights."""
    keras.utils.set_random_seed(0)
    cfg = tiny_config()
    model = build_model(cfg.model)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.bias.assign(np.full(layer.bias.shape, 0.01, np.float32))  # so "biases never pruned" is visible
    start = model.get_weights()
    anchors = anchor_grid(W, H, cfg.model.anchor_shapes)
    model.compile(optimizer=keras.optimizers.SGD(0.001, momentum=0.9), loss=loss_from_config(cfg, anchors))
    x, y = batch(cfg)
    pruning = MagnitudePruning(0.5, begin_step=0, end_step=6, frequency=2)
    model.fit(x, y, batch_size=BATCH, epochs=8, callbacks=[pruning], verbose=0)
    return cfg, model, start, pruning


def test_pruning_reaches_target_and_keeps_conv1_dense(pruned):
    _, model, _, pruning = pruned
    report = sparsity_report(model)
    assert report["conv1"] == 0.0
    pruned_layers = {k: v for k, v in report.items() if k != "conv1"}
    assert set(pruned_layers) == set(pruning.masks) and "convdet" in pruned_layers
    for name, sparsity in pruned_layers.items():
        assert abs(sparsity - 0.5) <= 0.01, (name, sparsity)
    assert all(np.all(layer.bias.numpy() != 0) for layer in model.layers if isinstance(layer, keras.layers.Conv2D))


def test_pruned_weights_stay_zero_in_further_training(pruned):
    cfg, model, _, pruning = pruned
    zeros = {name: model.get_layer(name).kernel.numpy() == 0 for name in pruning.masks}
    x, y = batch(cfg, seed=1)
    model.fit(x, y, batch_size=BATCH, epochs=3, callbacks=[pruning], verbose=0)  # past end_step: masks fixed
    for name, was_zero in zeros.items():
        kernel = model.get_layer(name).kernel.numpy()
        assert np.all(kernel[was_zero] == 0), name
        assert abs(np.mean(kernel == 0) - 0.5) <= 0.01, name


@pytest.mark.slow
def test_pruned_tflite_compresses_better(pruned, tmp_path):
    from squeezedet.export.exporter import export_tflite

    cfg, model, start, _ = pruned
    dense = build_model(cfg.model)
    dense.set_weights(start)
    sizes = {}
    for name, m in (("dense", dense), ("pruned", model)):
        weights = tmp_path / f"{name}.weights.h5"
        m.save_weights(str(weights))
        path = export_tflite(cfg, weights, tmp_path / f"{name}.tflite", "fp32", check_images=0)
        sizes[name] = (path.stat().st_size, gzip_size(path))
    assert abs(sizes["pruned"][0] - sizes["dense"][0]) < 0.01 * sizes["dense"][0]  # zeros still stored
    assert sizes["pruned"][1] < 0.75 * sizes["dense"][1]  # but they compress


def distiller_setup(weight: float, lr: float):
    from squeezedet.train.distill import build_distiller

    keras.utils.set_random_seed(0)
    cfg = tiny_config()
    cfg.train.distill_weight = weight
    student = build_model(cfg.model)
    teacher = build_model(tiny_config("squeezedet_plus").model, training_dropout=False)
    anchors = anchor_grid(W, H, cfg.model.anchor_shapes)
    distiller = build_distiller(student, teacher, cfg, anchors)
    distiller.compile(optimizer=keras.optimizers.SGD(lr))
    return cfg, student, teacher, distiller, anchors


def test_distillation_trains_only_the_student():
    cfg, student, teacher, distiller, _ = distiller_setup(weight=0.5, lr=0.001)
    teacher_before = [w.copy() for w in teacher.get_weights()]
    student_before = [w.copy() for w in student.get_weights()]
    x, y = batch(cfg)
    pruning = MagnitudePruning(0.3, begin_step=0, end_step=2, frequency=1)
    history = distiller.fit(x, y, batch_size=BATCH, epochs=3, callbacks=[pruning], verbose=0).history
    assert set(history) >= {"loss", "gt_loss", "distill_loss"}
    assert all(np.isfinite(v) for v in history["loss"] + history["distill_loss"])
    assert all(d > 0 for d in history["distill_loss"])
    assert all(np.array_equal(a, b) for a, b in zip(teacher_before, teacher.get_weights(), strict=True))
    assert any(not np.array_equal(a, b) for a, b in zip(student_before, student.get_weights(), strict=True))
    assert sparsity_report(student)["fire5_expand3x3"] == pytest.approx(0.3, abs=0.01)
    assert sparsity_report(teacher)["fire5_expand3x3"] == 0.0


def test_distillation_weight_zero_is_the_plain_loss():
    cfg, student, _, distiller, anchors = distiller_setup(weight=0.0, lr=0.0)
    x, y = batch(cfg)
    plain = float(loss_from_config(cfg, anchors)(y, student(x, training=True)))
    history = distiller.fit(x, y, batch_size=BATCH, epochs=1, verbose=0).history
    assert history["loss"][0] == pytest.approx(plain, rel=1e-5)
    assert history["gt_loss"][0] == pytest.approx(plain, rel=1e-5)


def test_distiller_rejects_a_mismatched_teacher():
    from squeezedet.train.distill import build_distiller

    cfg = tiny_config()
    other = tiny_config("squeezedet_plus")
    other.model.classes = ["car"]
    other.data.class_map = {"Car": "car"}
    anchors = anchor_grid(W, H, cfg.model.anchor_shapes)
    with pytest.raises(ConfigError, match="teacher output"):
        build_distiller(build_model(cfg.model), build_model(other.model), cfg, anchors)


def test_keep_largest_and_one_shot_pruning():
    from squeezedet.train.pruning import keep_largest, prune_by_magnitude

    m = np.array([[0.5, 0.1], [0.3, 0.1]])
    assert keep_largest(m, 0.5).tolist() == [[True, False], [True, False]]  # tie: the first 0.1 goes first
    assert keep_largest(m, 0.75).tolist() == [[True, False], [False, False]]
    assert keep_largest(m, 0.0).all()
    model = build_model(tiny_config().model)
    prune_by_magnitude(model, 0.6)
    report = sparsity_report(model)
    assert report["conv1"] == 0.0
    assert all(v == pytest.approx(0.6, abs=1e-3) for k, v in report.items() if k != "conv1")
