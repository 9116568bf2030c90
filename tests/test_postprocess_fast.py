"""The fast decoder gives exactly the detections of the straightforward one it replaced (kept below as the
reference: softmax and sigmoid on every anchor, top-k, threshold, per-class greedy NMS box by box), on real
model outputs and on random tensors; plus hand-checked NMS cases for the vectorised greedy rule."""

from pathlib import Path

import numpy as np
import pytest

from squeezedet.core.anchors import anchor_grid
from squeezedet.core.boxes import clip_xyxy, cxcywh_to_xyxy, decode_deltas, iou_matrix
from squeezedet.core.nms import greedy_keep, nms, per_class_nms
from squeezedet.core.postprocess import confidence_floor, postprocess, sigmoid, softmax, split_convdet_output

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "assets" / "models" / "squeezedet_kitti_int8.tflite"


# ---- the reference: the decoder as it was before the fast path (kept verbatim in behaviour) ----
def _ref_nms(boxes, scores, thr):
    order = np.argsort(-scores, kind="stable")
    ious = iou_matrix(boxes[order], boxes[order])
    suppressed = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(order[i])
        suppressed |= ious[i] > thr
    return np.asarray(keep, np.int64)


def _ref_per_class_nms(boxes, scores, labels, thr):
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep.extend(idx[_ref_nms(boxes[idx], scores[idx], thr)])
    keep = np.asarray(keep, np.int64)
    return keep[np.argsort(-scores[keep], kind="stable")] if len(keep) else keep


def _ref_top_k(scores, k):
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def reference_postprocess(raw, anchors, num_classes, input_size, image_size=None, score_threshold=0.3,
                          nms_threshold=0.4, top_k_before_nms=64, max_detections=100):
    raw = np.asarray(raw, np.float32)
    num_anchors = raw.shape[-1] // (num_classes + 5)
    cls_logits, conf_logits, deltas = split_convdet_output(raw, num_anchors, num_classes)
    probs = softmax(cls_logits) * sigmoid(conf_logits)[:, None]
    labels, scores = probs.argmax(axis=1), probs.max(axis=1)
    idx = _ref_top_k(scores, top_k_before_nms)
    idx = idx[scores[idx] >= score_threshold]
    in_w, in_h = input_size
    out_w, out_h = image_size or input_size
    boxes = cxcywh_to_xyxy(decode_deltas(deltas[idx], anchors[idx]))
    boxes = clip_xyxy(boxes * np.array([out_w / in_w, out_h / in_h] * 2, np.float32), out_w, out_h)
    keep = _ref_per_class_nms(boxes, scores[idx], labels[idx], nms_threshold)[:max_detections]
    return boxes[keep], scores[idx][keep], labels[idx][keep]



def assert_same(raw, anchors, num_classes, input_size, **kw):
    got = postprocess(raw, anchors, num_classes, input_size, **kw)
    boxes, scores, labels = reference_postprocess(raw, anchors, num_classes, input_size, **kw)
    assert len(got) == len(scores)
    np.testing.assert_array_equal(got.labels, labels)
    np.testing.assert_array_equal(got.scores, scores)
    np.testing.assert_array_equal(got.boxes, boxes)
    return len(got)


def test_greedy_keep_hand_computed_chain():
    # 0 suppresses 1, 1 would suppress 2 but is itself gone, so 2 stays; 3 overlaps 2 -> gone
    over = np.zeros((4, 4), bool)
    over[0, 1] = over[1, 2] = over[2, 3] = True
    assert greedy_keep(over).tolist() == [True, False, True, False]
    assert greedy_keep(np.zeros((0, 0), bool)).tolist() == []


def test_nms_hand_computed_and_matches_box_by_box_loop():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]  # 3 (0.95) suppresses 0 (IoU 1) and 1 (IoU 9/11)
    assert per_class_nms(boxes, scores, np.array([0, 1, 0, 0]), 0.5).tolist() == [3, 1, 2]
    rng = np.random.default_rng(1)
    for trial in range(200):
        n = int(rng.integers(1, 70))
        xy = rng.uniform(0, 100, (n, 2))
        wh = rng.uniform(5, 60, (n, 2))
        b = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        s = rng.uniform(0, 1, n).astype(np.float32)
        lab = rng.integers(0, 3, n)
        thr = float(rng.uniform(0.1, 0.7))
        assert nms(b, s, thr).tolist() == _ref_nms(b, s, thr).tolist()
        assert per_class_nms(b, s, lab, thr).tolist() == _ref_per_class_nms(b, s, lab, thr).tolist()


def test_confidence_floor_never_cuts_an_anchor_that_passes():
    for t in (1e-6, 0.01, 0.3, 0.5, 0.9, 0.999):
        floor = confidence_floor(t)
        assert sigmoid(np.float32(floor)) < t  # at the floor the score is below t: nothing above is lost
        assert sigmoid(np.float32(floor + 0.05)) > t * 0.99  # and it is tight
    assert confidence_floor(0.0) == -np.inf


@pytest.mark.parametrize("threshold", [0.0, 0.05, 0.3, 0.6])
def test_random_tensors_give_identical_detections(threshold):
    rng = np.random.default_rng(int(threshold * 100))
    w, h, classes = 320, 96, 3
    anchors = anchor_grid(w, h)
    a = 9
    decoded = 0
    for _ in range(5):
        raw = rng.normal(0, 2.0, (h // 16, w // 16, a * (classes + 5))).astype(np.float32)
        raw[..., a * classes : a * classes + a] += 1.0  # a fair share of confident anchors
        raw[..., a * classes + a :] *= 0.2  # deltas of realistic size
        decoded += assert_same(raw[None], anchors, classes, (w, h), image_size=(1242, 375),
                               score_threshold=threshold, nms_threshold=0.4, top_k_before_nms=64)
        assert_same(raw, anchors, classes, (w, h), score_threshold=threshold, top_k_before_nms=500,
                    max_detections=7)
    assert decoded > 0


def test_real_model_outputs_give_identical_detections():
    import cv2

    from squeezedet.core.metadata import read_metadata
    from squeezedet.core.preprocess import read_image_rgb, resize_for_model
    from squeezedet.core.runtime import TFLiteModel

    meta = read_metadata(BUNDLED)
    model = TFLiteModel(BUNDLED, num_threads=2)
    images = sorted((REPO / "assets" / "kitti_sample" / "training" / "image_2").glob("*.jpg"))[:6]
    frames = [read_image_rgb(p) for p in images]
    cap = cv2.VideoCapture(str(REPO / "assets" / "demo" / "highway_dashcam.mp4"))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    total = 0
    for frame in frames:
        raw = model(resize_for_model(frame, meta.input_size)[None])
        for thr in (0.05, meta.score_threshold):
            total += assert_same(raw, meta.anchors(), meta.num_classes, meta.input_size,
                                 image_size=(frame.shape[1], frame.shape[0]), score_threshold=thr,
                                 nms_threshold=meta.nms_threshold, top_k_before_nms=meta.top_k,
                                 max_detections=meta.max_detections)
    assert total >= len(frames)  # the real model detects things: the comparison is not vacuous
