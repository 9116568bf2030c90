"""numpy core: anchors, box codec, IoU, NMS, decode — against hand-computed values."""

import numpy as np
import pytest

from squeezedet.core import anchors as A
from squeezedet.core import boxes as B
from squeezedet.core.nms import nms, per_class_nms, top_k
from squeezedet.core.postprocess import postprocess


def test_anchor_grid_1248x384_has_16848_anchors_in_row_col_anchor_order():
    grid = A.anchor_grid(1248, 384)
    assert A.grid_size(1248, 384) == (78, 24)
    assert grid.shape == (24 * 78 * 9, 4) == (16848, 4)
    # centres as in the original: i * size / (cells + 1)
    assert grid[0, 0] == pytest.approx(1248 / 79)
    assert grid[0, 1] == pytest.approx(384 / 25)
    # anchors vary fastest, then columns, then rows
    np.testing.assert_allclose(grid[:9, 2:], np.array(A.DEFAULT_KITTI_ANCHOR_SHAPES))
    assert grid[9, 0] == pytest.approx(2 * 1248 / 79) and grid[9, 1] == pytest.approx(384 / 25)
    assert grid[78 * 9, 1] == pytest.approx(2 * 384 / 25)
    assert grid[-1, 0] == pytest.approx(78 * 1248 / 79) and grid[-1, 1] == pytest.approx(24 * 384 / 25)


def test_grid_follows_input_size():
    assert A.grid_size(384, 128) == (24, 8)
    assert A.grid_size(100, 50) == (7, 4)  # SAME padding rounds up
    assert len(A.anchor_grid(384, 128, [(10, 10), (20, 5)])) == 24 * 8 * 2


def test_scale_anchor_shapes():
    s = A.scale_anchor_shapes([(36, 37)], (1248, 384), (624, 192))
    np.testing.assert_allclose(s, [[18, 18.5]])


def test_iou_hand_computed():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 5, 5]], np.float32)
    # overlap 50 / union 150; identical; disjoint; contained 25/100
    np.testing.assert_allclose(B.iou_matrix(a, b), [[1 / 3, 1.0, 0.0, 0.25]])


def test_encode_decode_round_trip_and_values():
    anchors = np.array([[50, 40, 20, 10], [100, 100, 36, 37]], np.float32)
    gt = np.array([[55, 38, 40, 5], [100, 100, 36, 37]], np.float32)
    d = B.encode_boxes(gt, anchors)
    np.testing.assert_allclose(d[0], [5 / 20, -2 / 10, np.log(2), np.log(0.5)], rtol=1e-6)
    np.testing.assert_allclose(d[1], [0, 0, 0, 0], atol=1e-7)
    np.testing.assert_allclose(B.decode_deltas(d, anchors), gt, rtol=1e-5)


def test_safe_exp_is_linear_above_threshold_and_continuous():
    assert B.safe_exp(np.float32(0.5)) == pytest.approx(np.exp(0.5))
    assert B.safe_exp(np.float32(1.0)) == pytest.approx(np.e)
    assert B.safe_exp(np.float32(3.0)) == pytest.approx(3 * np.e)  # (3 - 1 + 1) * e
    assert np.isfinite(B.safe_exp(np.float32(1e6)))


def test_nms_hand_computed():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    # box1 vs box0: IoU 90/110 = 0.818 > 0.5 -> dropped; box3 identical to box0 -> dropped
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    # at threshold 0.85 box1 survives (0.818 is not > 0.85), box3 (IoU 1) does not
    assert nms(boxes, scores, 0.85).tolist() == [0, 1, 2]
    # per class: box3 in another class is kept
    assert sorted(per_class_nms(boxes, scores, [0, 0, 0, 1], 0.5).tolist()) == [0, 2, 3]
    assert top_k(scores, 2).tolist() == [0, 1]


def test_postprocess_decodes_one_confident_anchor_and_scales_to_frame():
    from squeezedet.core.postprocess import split_convdet_output

    num_classes, shapes = 2, [(16, 16), (32, 16)]
    anchors = A.anchor_grid(64, 32, shapes)  # grid 4x2, 2 anchors -> 16 anchors
    raw = np.zeros((2, 4, 2 * (num_classes + 5)), np.float32)
    raw[..., 2 * num_classes : 2 * num_classes + 2] = -10.0  # all confidences ~0
    # cell (row 1, col 2), anchor 1: class 1, confident, box shifted right by half a width
    raw[1, 2, 1 * num_classes + 1] = 8.0
    raw[1, 2, 2 * num_classes + 1] = 8.0
    raw[1, 2, 2 * num_classes + 2 + 4 * 1 + 0] = 0.5
    cls, conf, deltas = split_convdet_output(raw, 2, num_classes)
    idx = (1 * 4 + 2) * 2 + 1
    assert conf[idx] == 8.0 and deltas[idx, 0] == 0.5 and cls[idx, 1] == 8.0
    det = postprocess(raw, anchors, num_classes, (64, 32), image_size=(128, 96), score_threshold=0.5)
    assert len(det) == 1 and det.labels[0] == 1
    a = anchors[idx]  # cx = 3*64/5, cy = 2*32/3, w=32, h=16
    cx = a[0] + 0.5 * 32
    # scaled by (2, 3) to the 128x96 image, then clipped to its last pixel (x2 = 140.8 -> 127)
    assert cx + 16 > 63
    np.testing.assert_allclose(det.boxes[0], [(cx - 16) * 2, (a[1] - 8) * 3, 127, (a[1] + 8) * 3], rtol=1e-5)
    expected_score = 1 / (1 + np.exp(-8)) * np.exp(8) / (np.exp(8) + 1)
    assert det.scores[0] == pytest.approx(expected_score, rel=1e-5)


def test_postprocess_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match="channels"):
        from squeezedet.core.postprocess import split_convdet_output

        split_convdet_output(np.zeros((2, 2, 10)), 2, 2)


def test_grid_size_valid_padding_matches_the_original_release():
    # conv1 3x3/2 and three 3x3/2 pools, VALID: 1242 -> 620 -> 309 -> 154 -> 76, 375 -> 187 -> 93 -> 46 -> 22
    assert A.grid_size(1242, 375, "valid") == (76, 22)
    assert A.grid_size(1242, 375, "same") == (78, 24)
    assert A.grid_size(960, 288, "same") == (60, 18)
    # SqueezeDet+'s 7x7 conv1: 1242 -> 618 -> 308 -> 153 -> 76
    assert A.grid_size(1242, 375, "valid", conv1_kernel=7) == (76, 22)
    with pytest.raises(ValueError, match="too small"):
        A.grid_size(32, 32, "valid", conv1_kernel=7)


def test_anchor_grid_with_explicit_grid_spreads_centres_like_the_original():
    anchors = A.anchor_grid(1242, 375, [(36, 37)], grid=(76, 22))
    assert anchors.shape == (76 * 22, 4)
    # centres i * S / (G + 1): the constants of the authors' 1242x375 graph
    assert anchors[0, 0] == pytest.approx(1242 / 77) and anchors[0, 1] == pytest.approx(375 / 23)
    assert anchors[-1, 0] == pytest.approx(76 * 1242 / 77) and anchors[-1, 1] == pytest.approx(22 * 375 / 23)
