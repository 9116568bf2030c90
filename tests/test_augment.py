"""Augmentation: boxes follow the pixels, cut boxes are dropped, every op runs (albumentations 2.x
argument names: its warnings are errors here, see pyproject filterwarnings)."""

import warnings

import numpy as np
import pytest
from conftest import REPO, SAMPLE_ROOT

from squeezedet.config import AugmentConfig
from squeezedet.data.augment import augment, build_augmenter

OFF = dict(drift_p=0, hflip_p=0, motion_blur_p=0, defocus_p=0, jpeg_p=0, low_light_p=0, noise_p=0, color_jitter_p=0)


def test_every_op_builds_without_warnings_and_keeps_shape_and_dtype():
    cfg = AugmentConfig(**{k: 1.0 for k in OFF})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aug = build_augmenter(cfg, seed=3)
        img = np.random.default_rng(0).integers(0, 255, (120, 360, 3), dtype=np.uint8)
        out, boxes, labels = augment(aug, img, [[100, 30, 200, 90]], [2])
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out, img)
    assert boxes.shape[1] == 4 and len(boxes) == len(labels)


def test_hflip_moves_boxes_exactly():
    aug = build_augmenter(AugmentConfig(**{**OFF, "hflip_p": 1.0}), seed=0)
    img = np.zeros((100, 300, 3), np.uint8)
    _, boxes, labels = augment(aug, img, [[10, 20, 60, 80]], [1])
    np.testing.assert_allclose(boxes, [[240, 20, 290, 80]])
    assert labels.tolist() == [1]


def test_drift_keeps_box_on_object_and_drops_boxes_shifted_out():
    aug = build_augmenter(AugmentConfig(**{**OFF, "drift_p": 1.0, "drift_translate": 0.3, "drift_scale": (1.0, 1.0),
                                           "min_visibility": 0.5}), seed=1)
    img = np.zeros((200, 400, 3), np.uint8)
    img[80:120, 180:220] = 255  # a white square, labelled
    for _ in range(10):
        out, boxes, _ = augment(aug, img, [[180, 80, 220, 120], [0, 0, 30, 30]], [0, 1])
        ys, xs = np.nonzero(out[..., 0] > 127)
        # the white square's new position equals the transformed box of label 0
        sq = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        assert len(boxes) >= 1
        np.testing.assert_allclose(boxes[0], sq, atol=1.5)
        assert len(boxes) <= 2


def test_disabled_augmentation_clips_boxes_to_image():
    assert build_augmenter(AugmentConfig(enabled=False)) is None
    img = np.zeros((50, 100, 3), np.uint8)
    _, boxes, labels = augment(None, img, [[-2, 5, 40, 60], [99.5, 1, 130, 9]], [0, 1])
    np.testing.assert_allclose(boxes, [[0, 5, 40, 50]])  # second box < 1 px wide after clipping
    assert labels.tolist() == [0]


def test_augment_preview_writes_png(tmp_path):
    import cv2

    from squeezedet.cli import main

    out = tmp_path / "grid.png"
    rc = main(["augment-preview", "--config", str(REPO / "configs/kitti_sample.yaml"), "--data", str(SAMPLE_ROOT),
               "--output", str(out), "--samples", "2", "--variants", "3"])
    assert rc == 0
    grid = cv2.imread(str(out))
    assert grid.shape == (2 * 384, 3 * 1248, 3)


def test_anchors_command_kmeans_improves_mean_iou(tmp_path, capsys):
    import yaml

    from squeezedet.cli import main
    from squeezedet.config import load_config
    from squeezedet.core.kmeans_anchors import kmeans_anchors, mean_best_iou

    out = tmp_path / "anchors.yaml"
    rc = main(["anchors", "--data", str(SAMPLE_ROOT), "--config", str(REPO / "configs/kitti_sample.yaml"),
               "-k", "9", "--write", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    base = float(text.split("current anchors (9): ")[1].split()[0])
    new = float(text.split("k-means anchors (9):")[1].split()[0])
    assert new > base
    cfg = load_config(out)
    assert len(cfg.model.anchor_shapes) == 9
    assert yaml.safe_load(out.read_text())["data"]["root"] == "assets/kitti_sample"
    # hand-checkable case: two well separated clusters are found exactly
    wh = np.array([[10, 20]] * 5 + [[100, 50]] * 5, np.float32)
    np.testing.assert_allclose(kmeans_anchors(wh, 2), [[10, 20], [100, 50]])
    assert mean_best_iou(wh, [[10, 20], [100, 50]]) == pytest.approx(1.0)


def test_aspect_crop_keeps_full_height_shifts_and_drops_cut_boxes():
    def crop(boxes, labels, min_visibility):
        cfg = AugmentConfig(**{**OFF, "aspect_crop": 1.78, "aspect_crop_p": 1.0, "min_visibility": min_visibility})
        return augment(build_augmenter(cfg, seed=0), np.zeros((100, 400, 3), np.uint8), boxes, labels, cfg,
                       _CropAt100())

    boxes = np.array([[10, 10, 50, 90], [120, 20, 160, 60], [175, 0, 185, 10]], np.float32)
    out, b, lab = crop(boxes, np.array([0, 1, 2]), 0.5)
    assert out.shape == (100, 178, 3)
    # box 0 is outside the window (x 100..278): dropped; box 1 shifted by -100; box 2 kept whole
    np.testing.assert_allclose(b, [[20, 20, 60, 60], [75, 0, 85, 10]])
    assert lab.tolist() == [1, 2]
    # a box half inside with min_visibility 0.6 is dropped, with 0.4 it is clipped
    half = np.array([[80, 0, 120, 50]], np.float32)
    assert len(crop(half, np.array([0]), 0.6)[1]) == 0
    np.testing.assert_allclose(crop(half, np.array([0]), 0.4)[1], [[0, 0, 20, 50]])


class _CropAt100:
    """An rng whose aspect crop always happens, at x0 = 100."""

    def random(self):
        return 0.0

    def integers(self, lo, hi):
        return 100


def test_boxes_the_augmentation_makes_harder_than_hard_are_left_out_when_training_excludes_them():
    cfg = AugmentConfig(**{**OFF, "aspect_crop": 1.78, "aspect_crop_p": 1.0, "min_visibility": 0.3})
    aug = build_augmenter(cfg, seed=0)
    img = np.zeros((100, 400, 3), np.uint8)
    # window x 100..278; box 0 keeps 20/40 of its width (truncation 0.5: level 3), box 1 15/40 (0.625:
    # level 4), box 2 24/40 but was truncated 0.3 already (1 - 0.7 * 0.6 = 0.58: level 4), box 3 is inside
    boxes = np.array([[80, 20, 120, 60], [75, 20, 115, 60], [76, 20, 116, 60], [150, 20, 190, 60]], np.float32)
    labels = np.array([0, 1, 2, 0])
    truncated = np.array([0, 0, 0.3, 0], np.float32)
    _, _, lab = augment(aug, img, boxes, labels, cfg, _CropAt100())
    assert lab.tolist() == [0, 1, 2, 0]  # without difficulty: min_visibility 0.3 keeps all four
    _, out, lab = augment(aug, img, boxes, labels, cfg, _CropAt100(), difficulty=(truncated, [0, 0, 0, 0]))
    assert lab.tolist() == [0, 0]
    np.testing.assert_allclose(out, [[0, 20, 20, 60], [50, 20, 90, 60]])
    _, out, _ = augment(aug, img, boxes, labels, cfg, _CropAt100(), difficulty=(truncated, [0, 0, 0, 3]))
    np.testing.assert_allclose(out, [[0, 20, 20, 60]])  # occluded 3 is level 4 wherever it stands


def test_a_box_zoomed_under_25_px_is_left_out_when_training_excludes_hard_objects():
    cfg = AugmentConfig(**{**OFF, "drift_p": 1.0, "drift_scale": (0.8, 0.8), "drift_translate": 0.0})
    aug = build_augmenter(cfg, seed=0)
    img = np.zeros((200, 400, 3), np.uint8)
    box = np.array([[170, 86, 230, 114]], np.float32)  # 28 px tall (level 2) -> 22.4 (level 4)
    _, out, _ = augment(aug, img, box, [0], cfg)
    assert out[0, 3] - out[0, 1] == pytest.approx(22.4, abs=0.6)
    _, out, _ = augment(aug, img, box, [0], cfg, difficulty=([0.0], [0]))
    assert len(out) == 0
    tall = np.array([[170, 80, 230, 120]], np.float32)  # 40 px -> 32: still level 2, kept
    _, out, _ = augment(aug, img, tall, [0], cfg, difficulty=([0.0], [0]))
    assert len(out) == 1


def test_an_object_wholly_inside_keeps_its_labelled_truncation_through_the_warp():
    """Truncated exactly 0.50 is KITTI level 3; float noise in the warped area must not make it level 4."""
    cfg = AugmentConfig(**{**OFF, "drift_p": 1.0, "drift_scale": (0.95, 1.05), "drift_translate": 0.02})
    aug = build_augmenter(cfg, seed=5)
    img = np.zeros((200, 400, 3), np.uint8)
    box = np.array([[150, 60, 250, 140]], np.float32)  # 80 px tall, far from every border
    kept = sum(len(augment(aug, img, box, [0], cfg, difficulty=([0.5], [0]))[1]) for _ in range(40))
    assert kept == 40
