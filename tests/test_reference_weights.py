"""The SqueezeDet authors' published KITTI weights (../shared/data/reference_weights, present in CI):
each file imports and reproduces its source, the float set matches the 8-bit graph it was quantized
into, our loss agrees with the original's target encoding, and fine-tuning from the import keeps it."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import REPO, SAMPLE_ROOT

REFERENCE = REPO.parent / "shared" / "data" / "reference_weights"
pytestmark = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"{REFERENCE} not present (CI has it)")

BASE_CONFIG = REPO / "configs" / "kitti_reference_small.yaml"


def _images(n=3):
    from squeezedet.core.preprocess import read_image_rgb

    return [read_image_rgb(SAMPLE_ROOT / "training" / "image_2" / f"{i:06d}.jpg") for i in (75, 83, 91)[:n]]


@pytest.fixture(scope="module")
def small_float(tmp_path_factory):
    """The lossless import (float32 parameters, geometry and anchors from the 8-bit graph they belong to)."""
    from squeezedet.config import load_config
    from squeezedet.importers import import_model, read_source

    source = read_source(REFERENCE / "forge_small_float32")
    source.inherit(read_source(REFERENCE / "quant_small_sqdt.pb"))  # what `import --like` does
    assert source.run is not None and source.geometry["input_width"] == 960
    out = tmp_path_factory.mktemp("small_float32")
    result = import_model(source, out, load_config(BASE_CONFIG), {}, _images())
    return result


@pytest.mark.parametrize("name, geometry", [
    ("quant_small_sqdt.pb", (960, 288, "same", 1, (60, 18))),
    ("quantized_opt_sqdt.pb", (1242, 375, "valid", 3, (76, 22))),
])
def test_eight_bit_graphs_import_with_their_own_geometry(name, geometry, tmp_path):
    from squeezedet.config import Config
    from squeezedet.importers import import_model, read_source

    source = read_source(REFERENCE / name)
    assert source.quantized and source.run_8bit
    result = import_model(source, tmp_path, Config(), {}, _images(2))
    m = result.config.model
    assert (m.input_width, m.input_height, m.padding, m.convdet_kernel, m.grid_size) == geometry
    # the authors' training targets travel with their weights, even from a default base config
    d, t = result.config.data, result.config.train
    assert (d.box_size, d.exclude_hard_examples, t.loss_reference_batch) == ("inclusive", True, 20)
    r = result.report
    # against its own dequantized float run: float32 rounding only
    assert r["max_abs_dev_reference"] < 1e-3
    # against the real 8-bit run (every activation rounded to 256 levels): the same network
    assert r["correlation_source"] > 0.97 and r["mean_abs_dev_source"] < 1.0
    assert (tmp_path / "model.weights.h5").is_file()


def test_float_parameters_are_the_8bit_graphs_before_quantization(small_float):
    from squeezedet.importers import read_source

    float_params = read_source(REFERENCE / "forge_small_float32").params
    graph = read_source(REFERENCE / "quant_small_sqdt.pb").params
    for name, (k8, b8) in graph.items():
        kf, bf = float_params[name]
        step = (k8.max() - k8.min()) / 255
        assert np.max(np.abs(kf - k8)) <= 0.5 * step + 1e-6, name  # within half a quantization step
    r = small_float.report
    assert r["max_abs_dev_reference"] < 1e-3 and r["correlation_source"] > 0.98
    assert small_float.config.model.classes == ["car", "pedestrian", "cyclist"]


def test_imported_model_loss_is_far_below_an_untrained_models(small_float, capsys):
    """Our target encoding + loss agree with the original's: its trained weights score a low loss."""
    import keras

    from squeezedet.data.kitti_dataset import load_samples
    from squeezedet.data.pipeline import make_dataset
    from squeezedet.inference import load_weights
    from squeezedet.model import build_model
    from squeezedet.train.loss import loss_from_config

    cfg = small_float.config
    samples = load_samples(SAMPLE_ROOT, "train.txt", cfg.model.classes, cfg.data.class_map)
    loss = loss_from_config(cfg, cfg.model.anchors())

    def mean_loss(model):
        values = [float(loss(y, model(x, training=False)))
                  for x, y in make_dataset(cfg, samples, 15, training=False, repeat=False)]
        return float(np.mean(values))

    imported = build_model(cfg.model, training_dropout=False)
    load_weights(imported, small_float.output / "model.weights.h5")
    keras.utils.set_random_seed(0)
    untrained = build_model(cfg.model.model_copy(update={"pretrained_backbone": None}), training_dropout=False)
    ours, fresh = mean_loss(imported), mean_loss(untrained)
    with capsys.disabled():
        print(f"\nloss on the 75 sample train images: imported {ours:.3f}, untrained {fresh:.3f}")
    assert ours < 0.25 * fresh
    assert ours < 3.0


def _car_ap(main, weights, config, split, out) -> dict:
    assert main(["val", "--weights", str(weights), "--config", str(config), "--data", str(SAMPLE_ROOT),
                 "--split", split, "--output", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text())["classes"]["Car"]


@pytest.mark.slow
def test_fine_tuning_from_the_import_keeps_the_detector(small_float, tmp_path):
    """Training on a split must not lower that split's AP: 100 steps of the import's recipe (batch 4, stem
    frozen) on the 75 sample train images, augmentation off, keep Car moderate AP_R40 on those images within
    0.5 and on val within 1.0. It lost 5.7 and 7.6 before the targets matched the authors' (hard objects left
    out, inclusive box sizes) and the positive-confidence weight stopped depending on the batch size."""
    from squeezedet.cli import main
    from squeezedet.config import load_config, save_config
    from squeezedet.train.trainer import train

    cfg = load_config(small_float.output / "config.yaml", {
        "data.root": str(SAMPLE_ROOT), "train.epochs": 1, "train.steps_per_epoch": 100, "train.val_every": 0,
        "augment.enabled": False})
    assert cfg.data.exclude_hard_examples and cfg.data.box_size == "inclusive"  # as configs/kitti_reference_small
    assert cfg.train.batch_size == 4 and cfg.train.loss_reference_batch == 20
    result = train(cfg, tmp_path / "ft", init_weights=small_float.output, verbose=0)
    assert result.steps == 100 and np.isfinite(result.final_loss)
    assert cfg.train.freeze == ["conv1", "fire2_*", "fire3_*", "fire4_*", "fire5_*"]  # stays as imported

    from squeezedet.inference import load_weights
    from squeezedet.model import build_model

    imported, tuned = (build_model(cfg.model, training_dropout=False) for _ in range(2))
    load_weights(imported, small_float.output / "model.weights.h5")
    load_weights(tuned, tmp_path / "ft" / "last.weights.h5")
    for name in ("conv1", "fire2_expand3x3", "fire5_squeeze1x1"):
        for a, b in zip(imported.get_layer(name).get_weights(), tuned.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(imported.get_layer("fire9_expand3x3").get_weights()[0],
                              tuned.get_layer("fire9_expand3x3").get_weights()[0])
    config = tmp_path / "ft" / "config.yaml"
    save_config(cfg, config)
    ap = {}
    for split in ("train", "val"):
        for name, weights in (("imported", small_float.output / "model.weights.h5"),
                              ("tuned", tmp_path / "ft" / "last.weights.h5")):
            ap[split, name] = _car_ap(main, weights, config, f"{split}.txt", tmp_path / f"{name}_{split}")
    card = (REPO / "MODEL_CARD.md").read_text()  # the card's float row is this import's val result
    row = re.search(r"Keras fp32 \(imported\) \| Car \| ([\d.]+) / ([\d.]+) \| ([\d.]+) / ([\d.]+) \| "
                    r"([\d.]+) / ([\d.]+)", card)
    assert row and [ap["val", "imported"][d][k] for d in ("easy", "moderate", "hard") for k in ("AP_R40", "AP_R11")] \
        == pytest.approx([float(v) for v in row.groups()], abs=0.006)
    moderate = {k: v["moderate"]["AP_R40"] for k, v in ap.items()}
    assert moderate["val", "imported"] > 90
    assert moderate["train", "tuned"] >= moderate["train", "imported"] - 0.5, moderate
    assert moderate["val", "tuned"] >= moderate["val", "imported"] - 1.0, moderate


@pytest.mark.slow
def test_overfitting_eight_busy_images_raises_their_ap(small_float, tmp_path):
    """Training on 8 images (the sample's busiest: 6-14 cars each) must raise those images' AP: with the
    authors' targets 100 steps took Car moderate AP_R40 77.8 -> 80.9 while val stayed at 96.4 -> 96.7
    (before: 80.1, and val fell to 90.0)."""
    from squeezedet.config import load_config
    from squeezedet.data.kitti_dataset import load_samples
    from squeezedet.eval.validate import validate_model
    from squeezedet.inference import load_weights
    from squeezedet.model import build_model
    from squeezedet.train.trainer import train

    split = tmp_path / "busy8.txt"
    split.write_text("\n".join(["000049", "000038", "000047", "000010", "000068", "000036", "000053", "000046"]))
    cfg = load_config(small_float.output / "config.yaml", {
        "data.root": str(SAMPLE_ROOT), "data.train_split": str(split), "train.epochs": 1,
        "train.steps_per_epoch": 100, "train.val_every": 0, "augment.enabled": False})
    train(cfg, tmp_path / "ft", init_weights=small_float.output, verbose=0)
    samples = load_samples(SAMPLE_ROOT, split, cfg.model.classes, cfg.data.class_map)
    ap = []
    for weights in (small_float.output / "model.weights.h5", tmp_path / "ft" / "last.weights.h5"):
        model = build_model(cfg.model, training_dropout=False)
        load_weights(model, weights)
        ap.append(validate_model(cfg, model, samples, tmp_path / weights.parent.name).results["Car"]["moderate"].ap_r40)
    assert ap[1] > ap[0] + 1.0, ap
