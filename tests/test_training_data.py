"""What training feeds the model: the same pixels inference sees, and targets as the authors made them
(inclusive box sizes, KITTI's harder-than-hard objects optionally left out)."""

import numpy as np
import pytest
from conftest import SAMPLE_ROOT

from squeezedet.config import Config
from squeezedet.core.kitti import KittiObject
from squeezedet.data.kitti_dataset import load_samples

CLASSES = ["car", "pedestrian", "cyclist"]
CLASS_MAP = {"Car": "car", "Pedestrian": "pedestrian", "Cyclist": "cyclist"}


def _obj(height, truncated=0.0, occluded=0):
    return KittiObject("Car", truncated, occluded, 0.0, (10.0, 50.0, 60.0, 50.0 + height))


@pytest.mark.parametrize("obj, level", [
    (_obj(39.0), 1),  # 40 px tall counted inclusively, as the original's get_obj_level
    (_obj(38.5), 2),
    (_obj(39.0, truncated=0.16), 2),
    (_obj(24.0, occluded=1), 2),
    (_obj(23.9), 4),
    (_obj(60.0, truncated=0.4, occluded=2), 3),
    (_obj(60.0, truncated=0.51), 4),
    (_obj(60.0, occluded=3), 4),
])
def test_kitti_level_as_the_original(obj, level):
    assert obj.level == level


def test_exclude_hard_leaves_level_4_out_of_the_targets_only(tmp_path):
    split = tmp_path / "two.txt"
    split.write_text("000001\n000002\n")
    kept = load_samples(SAMPLE_ROOT, split, CLASSES, CLASS_MAP)
    easy = load_samples(SAMPLE_ROOT, split, CLASSES, CLASS_MAP, exclude_hard=True)
    # 000001: a Car 21.6 px tall and a Cyclist occluded 3 (both level 4); 000002: a Car 33 px tall (level 2)
    assert [len(s.boxes) for s in kept] == [2, 1]
    assert [len(s.boxes) for s in easy] == [0, 1]
    np.testing.assert_allclose(easy[1].boxes[0], [657.39, 190.13, 700.07, 223.39], rtol=1e-6)
    assert [len(s.objects) for s in easy] == [len(s.objects) for s in kept]  # evaluation keeps every object


@pytest.fixture(scope="module")
def one_image():
    pytest.importorskip("tensorflow")
    split_samples = load_samples(SAMPLE_ROOT, "train.txt", CLASSES, CLASS_MAP)
    return [s for s in split_samples if s.image_id == "000002"]


def _first_batch(cfg, samples):
    from squeezedet.data.pipeline import make_dataset

    x, y = next(iter(make_dataset(cfg, samples, 1, training=False, repeat=False)))
    return x.numpy()[0], y.numpy()[0]


def test_training_sees_the_pixels_inference_sees(one_image):
    from squeezedet.core.preprocess import read_image_rgb, resize_for_model

    cfg = Config.model_validate({"model": {"input_width": 256, "input_height": 80}, "augment": {"enabled": False}})
    x, _ = _first_batch(cfg, one_image)
    assert one_image[0].image_path.suffix == ".jpg"
    expected = resize_for_model(read_image_rgb(one_image[0].image_path), cfg.model.input_size)
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("box_size, grow", [("inclusive", 1.0), ("exclusive", 0.0)])
def test_box_size_convention_of_the_targets(one_image, box_size, grow):
    from squeezedet.core.preprocess import read_image_rgb

    cfg = Config.model_validate({
        "model": {"input_width": 256, "input_height": 80},
        "augment": {"enabled": False},
        "data": {"box_size": box_size},
    })
    _, y = _first_batch(cfg, one_image)
    h, w = read_image_rgb(one_image[0].image_path).shape[:2]
    sx, sy = 256 / w, 80 / h
    (row,) = y[y[:, 0] == 1]
    x1, y1, x2, y2 = 657.39, 190.13, 700.07 + grow, 223.39 + grow  # the Car of 000002, far edge pixel counted
    cx, cy, bw, bh = row[-4:]
    np.testing.assert_allclose([cx, cy, bw, bh], [(x1 + x2) / 2 * sx, (y1 + y2) / 2 * sy, (x2 - x1) * sx,
                                                  (y2 - y1) * sy], rtol=1e-5)
