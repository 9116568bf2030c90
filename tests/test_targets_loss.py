"""Target assignment (paper's rule) on hand-made boxes, and the loss on edge cases."""

import numpy as np
import pytest

from squeezedet.core.anchors import anchor_grid
from squeezedet.core.boxes import decode_deltas, xyxy_to_cxcywh
from squeezedet.data.targets import assign_anchors, encode_targets


def _anchors():
    # 4 anchors by hand (cx, cy, w, h)
    return np.array([[10, 10, 10, 10], [30, 10, 10, 10], [10, 10, 20, 20], [100, 100, 4, 4]], np.float32)


def test_each_box_takes_highest_iou_anchor_and_anchors_are_not_shared():
    anchors = _anchors()
    gt = np.array([[5, 5, 15, 15], [6, 6, 14, 14]], np.float32)
    # box 0 is anchor 0 exactly (IoU 1); box 1 (8x8 at (10,10)) also prefers anchor 0 (64/100)
    # over anchor 2 (64/400), but anchor 0 is taken -> anchor 2
    assert assign_anchors(gt, anchors).tolist() == [0, 2]


def test_box_overlapping_no_anchor_takes_nearest_by_squared_distance():
    anchors = _anchors()
    gt = np.array([[60, 60, 64, 64]], np.float32)  # centre (62,62) 4x4: overlaps none
    # squared distances in (cx,cy,w,h): anchor 3 -> 38^2*2 = 2888; anchor 2 -> 52^2*2 + 16^2*2 = 5920
    assert assign_anchors(gt, anchors).tolist() == [3]


def test_encode_targets_rows():
    anchors = _anchors()
    y = encode_targets([[5, 5, 15, 15], [26, 6, 36, 16]], [1, 0], anchors, num_classes=2)
    assert y.shape == (4, 11)
    assert y[:, 0].tolist() == [1, 1, 0, 0]
    np.testing.assert_allclose(y[0, 1:5], [0, 0, 0, 0], atol=1e-7)
    np.testing.assert_allclose(y[1, 1:5], [(31 - 30) / 10, (11 - 10) / 10, 0, 0], atol=1e-6)
    assert y[0, 5:7].tolist() == [0, 1] and y[1, 5:7].tolist() == [1, 0]
    np.testing.assert_allclose(y[1, 7:11], [31, 11, 10, 10])
    np.testing.assert_allclose(decode_deltas(y[1, 1:5], anchors[1]), xyxy_to_cxcywh([26, 6, 36, 16]), rtol=1e-6)
    assert not y[2:].any()


def test_targets_on_empty_image_and_degenerate_boxes():
    anchors = anchor_grid(64, 32, [(8, 8)])
    assert not encode_targets(np.zeros((0, 4)), [], anchors, 3).any()
    assert not encode_targets([[5, 5, 5, 9]], [0], anchors, 3).any()  # zero width dropped


@pytest.fixture(scope="module")
def loss_setup():
    tf = pytest.importorskip("tensorflow")
    from squeezedet.train.loss import SqueezeDetLoss

    anchors = anchor_grid(64, 32, [(16, 16), (32, 16)])
    return tf, anchors, SqueezeDetLoss(anchors, num_classes=2)


def test_loss_finite_on_image_without_objects(loss_setup):
    tf, anchors, loss = loss_setup
    y_true = np.zeros((2, len(anchors), 11), np.float32)
    y_pred = np.random.default_rng(0).normal(size=(2, 2, 4, 2 * 7)).astype(np.float32) * 5
    parts = {k: float(v) for k, v in loss.components(y_true, y_pred).items()}
    assert parts["class_loss"] == 0 and parts["bbox_loss"] == 0
    assert np.isfinite(parts["conf_loss"]) and parts["conf_loss"] > 0
    # gradients finite too
    x = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        value = loss(y_true, x)
    assert np.isfinite(tape.gradient(value, x).numpy()).all()


def test_loss_terms_hand_computed_for_one_object(loss_setup):
    tf, anchors, loss = loss_setup
    n = len(anchors)
    y_pred = np.zeros((1, 2, 4, 14), np.float32)  # all logits 0: probs 0.5/0.5, conf 0.5, deltas 0
    y_true = np.zeros((1, n, 11), np.float32)
    a = anchors[5]
    y_true[0, 5] = [1, 0.1, 0, 0, 0, 1, 0, a[0] + 0.1 * a[2], a[1], a[2], a[3]]
    parts = {k: float(v) for k, v in loss.components(y_true, y_pred).items()}
    # class: -log(0.5) - log(1 - 0.5) for one object
    assert parts["class_loss"] == pytest.approx(2 * np.log(2), rel=1e-5)
    # bbox: 5 * 0.1^2
    assert parts["bbox_loss"] == pytest.approx(5 * 0.01, rel=1e-5)
    # conf: predicted box = anchor; IoU with GT shifted by 0.1 w: 0.9/1.1
    iou = 0.9 / 1.1
    expected = 75 * (iou - 0.5) ** 2 + 100 / (n - 1) * (n - 1) * 0.25
    assert parts["conf_loss"] == pytest.approx(expected, rel=1e-4)


def _saturated_case(dtype):
    """One image, 2 classes, 8 anchors: anchor 0 a car predicted as car by a logit gap of 40 (p rounds to
    exactly 1.0 in float32), anchor 1 a pedestrian predicted as car by a gap of 200, anchor 2 a car at
    moderate logits; the rest background."""
    anchors = anchor_grid(32, 16, [(8, 8)], (4, 2))
    n = len(anchors)
    y_true = np.zeros((1, n, 11), np.float32)
    for i, cls in ((0, 0), (1, 1), (2, 0)):
        a = anchors[i]
        y_true[0, i, :5] = [1, 0.1, -0.1, 0.05, 0]
        y_true[0, i, 5 + cls] = 1
        y_true[0, i, 7:] = [a[0] + 0.1 * a[2], a[1] - 0.1 * a[3], a[2] * np.exp(0.05), a[3]]
    y_pred = np.zeros((1, 2, 4, 7), np.float32)  # per cell: 2 class logits, 1 conf logit, 4 deltas
    flat = y_pred.reshape(n, 7)
    flat[0, :2] = [20, -20]
    flat[1, :2] = [100, -100]
    flat[2, :2] = [1.5, -0.5]
    flat[:, 2] = [30, -30, 0.2, 0, 0, -25, 0, 0]  # saturated confidences too
    return anchors, y_true, y_pred.astype(dtype)


def _original_class_loss(y_pred, y_true):
    """The original's class term in float64 with 1 - p formed as the other class's probability (exact)."""
    z = y_pred.reshape(-1, 7)[:, :2].astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot, mask = y_true[0, :, 5:7], y_true[0, :, 0]
    ce = onehot * -np.log(p + 1e-16) + (1 - onehot) * -np.log(p[:, ::-1] + 1e-16)
    return float((ce.sum(1) * mask).sum() / mask.sum())


@pytest.mark.parametrize("dtype", ["float32", "float16"])  # float16: what a mixed-precision head emits
def test_loss_and_gradients_finite_in_graph_mode_on_saturated_logits(loss_setup, dtype):
    """As Keras fit runs it (a tf.function): a softmax that rounds to exactly 1.0 once gave
    -log(1 - 1 + 1e-16) = -log(0) after graph optimisation folded the epsilon away, and NaN."""
    tf, _, _ = loss_setup
    from squeezedet.train.loss import SqueezeDetLoss

    anchors, y_true, y_pred = _saturated_case(dtype)
    loss = SqueezeDetLoss(anchors, num_classes=2)

    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            parts = loss.components(y_true, x)
            total = parts["class_loss"] + parts["conf_loss"] + parts["bbox_loss"]
        return parts, tape.gradient(total, x)

    x = tf.constant(y_pred)
    eager_parts, eager_grad = run(x)
    graph_parts, graph_grad = tf.function(run)(x)
    for name in eager_parts:
        g, e = float(graph_parts[name]), float(eager_parts[name])
        assert np.isfinite(g), name
        assert g == pytest.approx(e, rel=1e-5, abs=1e-5), name
    assert np.isfinite(graph_grad.numpy()).all() and np.isfinite(eager_grad.numpy()).all()
    np.testing.assert_allclose(graph_grad.numpy(), eager_grad.numpy(), rtol=1e-5, atol=1e-5)
    # hand-computed: the car at gap 40 costs ~0, the pedestrian seen as a car -log(e^-200 + 1e-16) twice
    # (= 2 * 36.84), the moderate car -log(p) - log(1 - q) with p = q' = 1/(1 + e^-2)
    expected = _original_class_loss(y_pred, y_true)
    assert expected == pytest.approx((2 * -np.log(1e-16) + 2 * np.log1p(np.exp(-2.0))) / 3, rel=1e-6)
    assert float(graph_parts["class_loss"]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("num_classes", [2, 3, 7])
def test_class_loss_equals_the_original_formula_on_moderate_logits(loss_setup, num_classes):
    tf, anchors, loss = loss_setup
    from squeezedet.train.loss import class_cross_entropy

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 50, num_classes)).astype(np.float32) * 4
    logits[0, 0, :2] = 5.0  # a tie for the top class
    onehot = np.eye(num_classes, dtype=np.float32)[rng.integers(0, num_classes, size=(2, 50))]
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    original = onehot * -np.log(p + 1e-16) + (1 - onehot) * -np.log(1 - p + 1e-16)
    ours = tf.function(class_cross_entropy)(tf.constant(logits), tf.constant(onehot)).numpy()
    np.testing.assert_allclose(ours, original, rtol=1e-5, atol=1e-5)


def test_single_class_cross_entropy_is_finite_and_zero_for_the_only_class(loss_setup):
    tf, _, _ = loss_setup
    from squeezedet.train.loss import class_cross_entropy

    logits = tf.constant([[[3.0], [-50.0]]])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        ce = class_cross_entropy(logits, tf.ones_like(logits))
    np.testing.assert_allclose(ce.numpy(), 0.0, atol=1e-6)  # p = 1 exactly: -log(1 + 1e-16)
    assert np.isfinite(tape.gradient(ce, logits).numpy()).all()


def test_predicted_boxes_are_scored_as_the_original_clipped_and_inclusive(loss_setup):
    tf, _, _ = loss_setup
    from squeezedet.train.loss import predicted_boxes_for_iou

    anchors = np.array([[4.0, 10.0, 20.0, 10.0], [30.0, 20.0, 10.0, 4.0], [62.0, 20.0, 14.0, 4.0]], np.float32)
    deltas = np.zeros((1, 3, 4), np.float32)
    # in a 64x32 image: anchor 0 spans x -6..14 (clipped to 0..14); anchor 1 lies inside (25..35, 18..22);
    # anchor 2 spans x 55..69: its far edge is 64 either way (exclusive: the image's edge; inclusive: the
    # last pixel, 63, plus one)
    plain = predicted_boxes_for_iou(deltas, anchors).numpy()[0]
    np.testing.assert_allclose(plain, anchors, rtol=1e-6)
    clipped = predicted_boxes_for_iou(deltas, anchors, (64, 32)).numpy()[0]
    np.testing.assert_allclose(clipped, [[7, 10, 14, 10], [30, 20, 10, 4], [59.5, 20, 9, 4]], rtol=1e-6)
    inclusive = predicted_boxes_for_iou(deltas, anchors, (64, 32), inclusive=True).numpy()[0]
    np.testing.assert_allclose(inclusive, [[7.5, 10.5, 15, 11], [30.5, 20.5, 11, 5], [59.5, 20.5, 9, 5]],
                               rtol=1e-6)


def test_reference_batch_keeps_the_objective_whatever_the_batch_size(loss_setup):
    """The original's positive-confidence term is a per-object mean divided by the batch size again; with
    a reference batch the same images give the same loss at batch 1, 4 or 20."""
    tf, anchors, _ = loss_setup
    from squeezedet.train.loss import SqueezeDetLoss

    _, y_true, y_pred = _saturated_case("float32")
    anchors = anchor_grid(32, 16, [(8, 8)], (4, 2))
    y_pred = y_pred * 0.05  # unsaturated: every term carries a gradient
    original = SqueezeDetLoss(anchors, num_classes=2)
    fixed = SqueezeDetLoss(anchors, num_classes=2, reference_batch=20)

    def conf(loss, b):
        return float(loss.components(np.repeat(y_true, b, 0), np.repeat(y_pred, b, 0))["conf_loss"])

    pos = float(original.components(y_true, y_pred)["conf_loss"]) - float(
        original.components(y_true * np.array([0] * 9 + [1] * 2, np.float32), y_pred)["conf_loss"])
    assert pos != 0
    for b in (1, 4, 20):
        assert conf(fixed, b) == pytest.approx(conf(fixed, 1), rel=1e-5)
    assert conf(original, 20) == pytest.approx(conf(fixed, 20), rel=1e-5)  # the original at its batch of 20
    assert conf(original, 4) > conf(fixed, 4)  # the original weighs positives 5x at batch 4
