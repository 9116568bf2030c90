"""train --init-weights and train.freeze: a trained detector's layers land in a model of another input
size, the head only when classes and anchors match, and frozen layers leave the trainable set."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from squeezedet.config import Config, save_config
from squeezedet.errors import ConfigError, ModelFileError
from squeezedet.model import build_model
from squeezedet.train.init_weights import apply_freeze, init_from_trained


def _trained(tmp_path, **model):
    cfg = Config.model_validate({"model": {"input_width": 96, "input_height": 64, **model}})
    m = build_model(cfg.model, training_dropout=False)
    rng = np.random.default_rng(1)
    for layer in m.layers:  # distinctive values, so a copy is recognisable
        if layer.weights:
            layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()])
    m.save_weights(str(tmp_path / "model.weights.h5"))
    save_config(cfg, tmp_path / "config.yaml")
    return m


def test_every_layer_is_copied_into_another_input_size(tmp_path):
    source = _trained(tmp_path)
    cfg = Config.model_validate({"model": {"input_width": 160, "input_height": 96}})
    model = build_model(cfg.model)
    report = init_from_trained(model, cfg, tmp_path)  # the folder: model.weights.h5 inside
    assert report["head_loaded"] and report["skipped"] == []
    for name in ("conv1", "fire5_expand3x3", "fire11_squeeze1x1", "convdet"):
        for a, b in zip(model.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_other_classes_reinitialise_only_the_head_with_one_notice(tmp_path, caplog):
    source = _trained(tmp_path)
    cfg = Config.model_validate({"model": {"input_width": 96, "input_height": 64, "classes": ["car", "truck"]},
                                 "data": {"class_map": {"Car": "car", "Truck": "truck"}}})
    model = build_model(cfg.model)
    fresh_head = model.get_layer("convdet").get_weights()[0].copy()
    with caplog.at_level(logging.WARNING):
        report = init_from_trained(model, cfg, tmp_path / "model.weights.h5")
    assert report["skipped"] == ["convdet"] and not report["head_loaded"]
    notices = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert notices == ["init-weights: classes car,pedestrian,cyclist -> car,truck, so the ConvDet head is "
                       "re-initialised (everything else is loaded)"]
    np.testing.assert_array_equal(model.get_layer("convdet").get_weights()[0], fresh_head)
    np.testing.assert_array_equal(model.get_layer("fire9_expand1x1").get_weights()[0],
                                  source.get_layer("fire9_expand1x1").get_weights()[0])


def test_incompatible_geometry_is_a_one_line_error(tmp_path):
    _trained(tmp_path, convdet_kernel=1)
    cfg = Config.model_validate({"model": {"input_width": 96, "input_height": 64}})  # 3x3 ConvDet
    with pytest.raises(ModelFileError, match=r"layer convdet has shapes \[\(1, 1, 768, 72\), \(72,\)\]"):
        init_from_trained(build_model(cfg.model), cfg, tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="no model.weights.h5, best.weights.h5, last.weights.h5"):
        init_from_trained(build_model(cfg.model), cfg, tmp_path / "empty")


def test_freeze_patterns_take_layers_out_of_training(tmp_path):
    cfg = Config.model_validate({"model": {"input_width": 96, "input_height": 64}})
    model = build_model(cfg.model)
    before = len(model.trainable_weights)
    frozen = apply_freeze(model, ["conv1", "fire2_*"])
    assert frozen == ["conv1", "fire2_squeeze1x1", "fire2_expand1x1", "fire2_expand3x3"]
    assert len(model.trainable_weights) == before - 2 * 4  # kernel + bias of each
    assert not model.get_layer("fire2_expand3x3").trainable and model.get_layer("fire3_squeeze1x1").trainable
    with pytest.raises(ConfigError, match="train.freeze: 'fire99_\\*' matches no layer"):
        apply_freeze(model, ["fire99_*"])


def test_pruning_leaves_frozen_layers_dense():
    import keras

    from squeezedet.train.pruning import MagnitudePruning

    cfg = Config.model_validate({"model": {"input_width": 96, "input_height": 64}})
    model = build_model(cfg.model)
    apply_freeze(model, ["fire2_*"])
    model.compile(optimizer=keras.optimizers.SGD())
    pruning = MagnitudePruning(0.5)
    pruning.set_model(model)
    pruning.on_train_begin()
    assert "fire2_expand3x3" not in pruning.masks and "conv1" not in pruning.masks
    assert "fire3_expand3x3" in pruning.masks and "convdet" in pruning.masks
