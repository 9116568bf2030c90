"""KITTI 2D evaluation: one devkit rule per test, with expected AP worked out by hand in the comments.

How the hand computations go (devkit evaluate_object.cpp, 2D part):
* getThresholds walks the TP scores (descending) and keeps the i-th one (recall (i+1)/n_gt) when the
  midpoint of its recall and the next one, (2i+3)/(2 n_gt), is >= the current sample point c; c starts
  at 0 and grows by 1/40 per kept threshold. The last TP score is always kept.
* precision[k] = TP/(TP+FP) at the k-th kept threshold (0 for k past the last one); then
  precision[k] = max(precision[k:]). AP_R40 = mean(precision[1..40]), AP_R11 = mean(precision[0,4,..,40]).

Most tests use BASE: 41 images with one 100x50 px Car each (tall enough for every difficulty), detected
exactly with scores 1.00, 0.99, ..., 0.60. With n_gt = 41 every TP is kept as a threshold (midpoint
(2i+3)/82 >= i/40 for all i <= 60), giving 41 thresholds at precision 1: AP_R40 = AP_R11 = 100.
One extra image then carries the rule under test. Three outcomes recur:
* no effect:          100 / 100.
* one FP above every TP score: precision at threshold k is (k+1)/(k+2), increasing in k, so every
  interpolated precision is the last one, 41/42:  AP_R40 = AP_R11 = 100*41/42 = 97.619.
* one more valid GT never detected (n_gt 42, 41 TP scores): thresholds kept at i = 0..30 (midpoint
  (2i+3)/84 >= i/40 while 4i <= 120); i = 31 is skipped (65/84 = 0.7738 < c = 0.775); i = 32..40 kept
  (9 more) = 40 thresholds at precision 1, precision[40] = 0:  AP_R40 = 39/40 = 97.5, AP_R11 = 10/11 = 90.909.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from squeezedet.cli import main
from squeezedet.core.boxes import iou_matrix
from squeezedet.core.kitti import KittiObject, read_labels
from squeezedet.eval.kitti_eval import (
    DIFFICULTIES,
    IOU_THRESHOLDS,
    N_SAMPLE_PTS,
    NEIGHBOUR_CLASSES,
    evaluate,
    evaluate_folders,
    sample_thresholds,
)
from squeezedet.eval.report import evaluate_and_report, format_table, metrics_dict
from squeezedet.eval.validate import results_from_detections

BOX = (0.0, 0.0, 100.0, 50.0)
OK = (100.0, 100.0)
FP = (100 * 41 / 42, 100 * 41 / 42)
FN = (100 * 39 / 40, 100 * 10 / 11)


def lab(box, type="Car", trunc=0.0, occ=0) -> KittiObject:
    return KittiObject(type=type, truncated=trunc, occluded=occ, alpha=0.0, bbox=tuple(box))


def det(box, score, type="Car") -> KittiObject:
    return KittiObject(type=type, truncated=-1.0, occluded=-1, alpha=-10.0, bbox=tuple(box), score=score)


def base(cls="Car", n=41):
    """n images with one exactly-detected GT of class cls; scores 1.00, 0.99, ..."""
    gt = {f"b{k:02d}": [lab(BOX, cls)] for k in range(n)}
    dt = {f"b{k:02d}": [det(BOX, 1.0 - k / 100, cls)] for k in range(n)}
    return gt, dt


def aps(gt, dt, cls="Car"):
    """{difficulty: (AP_R40, AP_R11)} of one class."""
    res = evaluate(gt, dt, classes=(cls,))
    return {d: (r.ap_r40, r.ap_r11) for d, r in res.results[cls].items()}


def expect(got, easy, moderate=None, hard=None):
    want = {"easy": easy, "moderate": moderate or easy, "hard": hard or moderate or easy}
    assert got == {d: pytest.approx(v, abs=1e-9) for d, v in want.items()}


def test_base_all_detected_is_100():
    expect(aps(*base()), OK)


def test_image_without_gt_its_detections_are_false_positives():
    gt, dt = base()
    gt["x"], dt["x"] = [], [det((200, 0, 300, 50), 2.0)]
    expect(aps(gt, dt), FP)


def test_duplicate_detection_is_false_positive():
    # A second exact detection of b00's car, scored 1.5. The score pass (compute_fp=false) gives each GT its
    # highest-scoring candidate, so the TP scores are 1.5, 0.99, ..., 0.60: still 41 thresholds.
    # At t=1.5 only the 1.5 box is in: TP 1, FP 0 -> 1. At every later threshold k both b00 boxes are in:
    # one is the TP, the other an FP -> (k+1)/(k+2), interpolated to 41/42.
    # AP_R40 = 100*41/42 = 97.619;  AP_R11 = 100*(1 + 10*41/42)/11 = 97.835.
    gt, dt = base()
    dt["b00"] = [det(BOX, 1.0), det(BOX, 1.5)]
    expect(aps(gt, dt), (100 * 41 / 42, 100 * (1 + 10 * 41 / 42) / 11))


def test_dontcare_absorbs_by_intersection_over_detection_area():
    gt, dt = base()
    dont_care = lab((0, 0, 400, 200), "DontCare", trunc=-1, occ=-1)
    # Inside the DontCare: intersection / detection area = 5000/5000 = 1 > 0.7 (the IoU is only
    # 5000/80000 = 0.0625): not an FP. One DontCare absorbs both boxes.
    gt["x"], dt["x"] = [dont_care], [det((10, 10, 110, 60), 2.0), det((200, 100, 300, 150), 1.9)]
    expect(aps(gt, dt), OK)
    # Half inside: 50*50 / (100*50) = 0.5, not > 0.7: an FP above every TP.
    dt["x"] = [det((350, 0, 450, 50), 2.0)]
    expect(aps(gt, dt), FP)
    # Exactly 0.7 inside (70*50 / 5000): not strictly greater, still an FP.
    dt["x"] = [det((330, 0, 430, 50), 2.0)]
    expect(aps(gt, dt), FP)


@pytest.mark.parametrize("cls, other", [("Car", "Truck"), ("Pedestrian", "Cyclist")])
def test_neighbour_class_gt_is_ignored(cls, other):
    (neighbour,) = NEIGHBOUR_CLASSES[cls]  # Van for Car, Person_sitting for Pedestrian
    gt, dt = base(cls)
    # A detection on a neighbour-class GT is neither TP nor FP; the undetected neighbour is no FN.
    gt["x"], dt["x"] = [lab(BOX, neighbour)], [det(BOX, 2.0, cls)]
    gt["y"] = [lab((200, 0, 300, 50), neighbour)]
    expect(aps(gt, dt, cls), OK)
    # Any other class is not considered at all: the same detection on it is an FP.
    gt["x"] = [lab(BOX, other)]
    expect(aps(gt, dt, cls), FP)


def test_min_height_on_detections_truncated_to_whole_pixels():
    gt, dt = base()
    # 24.9 px tall -> 24 px (devkit int cast) < 25: ignored at every difficulty, not an FP.
    gt["x"], dt["x"] = [], [det((0, 0, 40, 24.9), 2.0)]
    expect(aps(gt, dt), OK)
    # 25.5 px -> 25: still too small for easy (40), an FP for moderate and hard (25).
    dt["x"] = [det((0, 0, 40, 25.5), 2.0)]
    expect(aps(gt, dt), OK, FP, FP)


@pytest.mark.parametrize(
    "box, trunc, occ, outcome",
    [
        # Easy: trunc <= 0.15, occ <= 0, height >= 40; moderate: 0.30, 1, 25; hard: 0.50, 2, 25.
        (BOX, 0.15, 0, (FN, FN, FN)),  # at the limit is allowed (filter is trunc > max)
        (BOX, 0.20, 0, (OK, FN, FN)),
        (BOX, 0.40, 0, (OK, OK, FN)),
        (BOX, 0.60, 0, (OK, OK, OK)),
        (BOX, 0.0, 1, (OK, FN, FN)),
        (BOX, 0.0, 2, (OK, OK, FN)),
        (BOX, 0.0, 3, (OK, OK, OK)),
        ((0, 0, 100, 39.5), 0.0, 0, (OK, FN, FN)),  # GT height is compared as float: 39.5 < 40
        ((0, 0, 100, 24.5), 0.0, 0, (OK, OK, OK)),
    ],
)
def test_undetected_gt_filtered_per_difficulty(box, trunc, occ, outcome):
    # An undetected GT outside a difficulty is ignored (OK); inside it is a false negative (FN).
    gt, dt = base()
    gt["x"] = [lab(box, trunc=trunc, occ=occ)]
    expect(aps(gt, dt), *outcome)


def test_detection_on_gt_outside_difficulty_is_not_counted():
    # Truncation 0.2: easy ignores the GT, so its detection is neither TP nor FP (AP 100, 41 GT);
    # moderate/hard count it: 42 GT all detected. n_gt 42 with 42 TP scores keeps 41 thresholds
    # (i = 0..30, skip 31, then 32..41): AP 100.
    gt, dt = base()
    gt["x"], dt["x"] = [lab(BOX, trunc=0.2)], [det(BOX, 2.0)]
    res = evaluate(gt, dt, classes=("Car",))
    assert [res.results["Car"][d.name].num_gt for d in DIFFICULTIES] == [41, 42, 42]
    expect(aps(gt, dt), OK)


@pytest.mark.parametrize("cls, width", [("Car", 70.0), ("Pedestrian", 50.0)])
def test_iou_must_be_strictly_greater_than_threshold(cls, width):
    short = (0.0, 0.0, width, 50.0)  # inside BOX: IoU = width*50 / 5000, exactly 0.7 / 0.5 in float
    assert iou_matrix([BOX], [short])[0, 0] == IOU_THRESHOLDS[cls]
    gt, dt = base(cls)
    # b40's box (the lowest score, 0.60) at exactly the threshold: b40 becomes a FN and the box an FP.
    # n_gt 41, 40 TP scores: every one is kept (n_gt <= 60) -> 40 thresholds, the lowest 0.61, so the
    # 0.60 FP is never above a threshold. precision[0..39] = 1, precision[40] = 0:
    # AP_R40 = 39/40 = 97.5, AP_R11 = 10/11 = 90.909.
    dt["b40"] = [det(short, 0.60, cls)]
    expect(aps(gt, dt, cls), FN)
    dt["b40"] = [det((0.0, 0.0, width + 0.5, 50.0), 0.60, cls)]  # just above the threshold: a TP again
    expect(aps(gt, dt, cls), OK)


def test_r40_and_r11_differ_at_half_recall():
    # 80 GT, the first 40 detected (scores 1.00 .. 0.61). Threshold k is kept at the first i with
    # (2i+3)/160 >= k/40, i.e. i = 2k-1 (k >= 1); k = 20 at i = 39, the last: 21 thresholds at precision 1.
    # AP_R40 = 20/40 = 50.0; AP_R11 counts points 0,4,..,20 = 6 of 11 = 54.545.
    gt, dt = base(n=80)
    for k in range(40, 80):
        dt[f"b{k:02d}"] = []
    expect(aps(gt, dt), (50.0, 100 * 6 / 11))


def test_single_gt_devkit_quirk():
    # The devkit indexes precision by threshold number, not by recall: one GT detected gives a single
    # threshold at position 0, which R40 skips. AP_R40 = 0, AP_R11 = 1/11 = 9.09.
    gt, dt = base(n=1)
    expect(aps(gt, dt), (0.0, 100 / 11))


def test_lowercase_names_counts_and_undefined_ap():
    gt, dt = base()
    gt["x"], dt["x"] = [lab(BOX, "Pedestrian", occ=1)], [det(BOX, 0.5, "Pedestrian")]
    res = evaluate(gt, dt, classes=("car", "pedestrian"))
    assert res.classes == ("Car", "Pedestrian")
    car = res.results["Car"]["moderate"]
    assert (car.num_gt, car.num_det, len(car.thresholds)) == (41, 41, 41)
    assert car.precision.shape == car.recall.shape == (N_SAMPLE_PTS,)
    assert car.recall[-1] == 1.0
    ped = res.results["Pedestrian"]
    assert np.isnan(ped["easy"].ap_r40) and ped["easy"].num_gt == 0  # occluded: no easy pedestrian
    assert ped["moderate"].ap_r11 == pytest.approx(100 / 11)
    mean = res.mean()
    assert mean["easy"]["AP_R40"] == pytest.approx(100.0)  # classes without GT are left out of the mean
    assert mean["moderate"]["AP_R40"] == pytest.approx(50.0)
    m = metrics_dict(res)
    assert m["classes"]["Pedestrian"]["easy"]["AP_R40"] is None
    assert m["iou_thresholds"] == {"Car": 0.7, "Pedestrian": 0.5}
    assert "mean" in format_table(res)


# --- cross-check against a literal port of the devkit loops ---------------------------------------------

def _overlap(d, g, criterion):
    """Devkit imageBoxOverlap: -1 = IoU, 0 = intersection over the first (detection) box."""
    w = min(d[2], g[2]) - max(d[0], g[0])
    h = min(d[3], g[3]) - max(d[1], g[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    da = (d[2] - d[0]) * (d[3] - d[1])
    return inter / (da + (g[2] - g[0]) * (g[3] - g[1]) - inter) if criterion == -1 else inter / da


def _devkit_statistics(gt, det, dc, ig, idt, compute_fp, thr, thresh=0.0):
    """computeStatistics, loop for loop."""
    no_det = -10000000
    assigned = [False] * len(det)
    below = [compute_fp and d.score < thresh for d in det]
    tp = fp = fn = 0
    v = []
    for i, g in enumerate(gt):
        if ig[i] == -1:
            continue
        idx, valid, max_ov, took_ignored = -1, no_det, 0.0, False
        for j, d in enumerate(det):
            if idt[j] == -1 or assigned[j] or below[j]:
                continue
            ov = _overlap(d.bbox, g.bbox, -1)
            if not compute_fp and ov > thr and d.score > valid:
                idx, valid = j, d.score
            elif compute_fp and ov > thr and (ov > max_ov or took_ignored) and idt[j] == 0:
                max_ov, idx, valid, took_ignored = ov, j, 1, False
            elif compute_fp and ov > thr and valid == no_det and idt[j] == 1:
                idx, valid, took_ignored = j, 1, True
        if valid == no_det and ig[i] == 0:
            fn += 1
        elif valid != no_det and (ig[i] == 1 or idt[idx] == 1):
            assigned[idx] = True
        elif valid != no_det:
            tp += 1
            v.append(det[idx].score)
            assigned[idx] = True
    if compute_fp:
        fp = sum(not (assigned[j] or idt[j] != 0 or below[j]) for j in range(len(det)))
        for c in dc:
            for j, d in enumerate(det):
                if not (assigned[j] or idt[j] != 0 or below[j]) and _overlap(d.bbox, c.bbox, 0) > thr:
                    assigned[j] = True
                    fp -= 1
    return tp, fp, fn, v


def _devkit_precision(images, cls, diff, thr):
    """eval_class with cleanData inlined: the 41 interpolated precisions and n_gt."""
    n_gt, per_image, v = 0, [], []
    for gt, det in images:
        ig, idt = [], []
        for o in gt:
            ok_class = 1 if o.type == cls else 0 if o.type in NEIGHBOUR_CLASSES.get(cls, ()) else -1
            hidden = (o.occluded > diff.max_occlusion or o.truncated > diff.max_truncation
                      or o.bbox[3] - o.bbox[1] < diff.min_height)
            ig.append(0 if ok_class == 1 and not hidden else 1 if ok_class == 0 or ok_class == 1 else -1)
            n_gt += ig[-1] == 0
        for o in det:
            idt.append(1 if int(abs(o.bbox[1] - o.bbox[3])) < diff.min_height else 0 if o.type == cls else -1)
        dc = [o for o in gt if o.type == "DontCare"]
        per_image.append((gt, det, dc, ig, idt))
        v += _devkit_statistics(gt, det, dc, ig, idt, False, thr)[3]
    thresholds = sample_thresholds(v, n_gt)
    precision = np.zeros(N_SAMPLE_PTS)
    for k, t in enumerate(thresholds):
        tp, fp, _ = np.sum([_devkit_statistics(*im, True, thr, t)[:3] for im in per_image], axis=0)
        precision[k] = tp / (tp + fp)
    return np.maximum.accumulate(precision[::-1])[::-1], n_gt


def _random_images(rng, n_images):
    """Crowded, overlapping scenes: every label type, jittered detections, wrong classes, small boxes, ties."""
    types = ["Car", "Car", "Van", "Pedestrian", "Person_sitting", "Cyclist", "Truck", "DontCare"]
    gt, dt = {}, {}
    for i in range(n_images):
        labels, dets = [], []
        for _ in range(rng.integers(0, 8)):
            t = types[rng.integers(len(types))]
            x, y, h = rng.uniform(0, 200), rng.uniform(0, 60), rng.uniform(15, 70)
            w = h * rng.uniform(0.4, 2.5) * (2 if t == "DontCare" else 1)
            labels.append(lab((x, y, x + w, y + h), t, float(rng.choice([0, 0.1, 0.2, 0.4, 0.6])),
                              int(rng.integers(0, 4))))
        for o in labels:
            for _ in range(rng.integers(0, 3)):
                b = np.asarray(o.bbox) + rng.normal(0, 3, 4)
                b[2:] = np.maximum(b[2:], b[:2] + 1)
                t = o.type if o.type in ("Car", "Pedestrian", "Cyclist") and rng.random() < 0.8 else \
                    ("Car", "Pedestrian", "Cyclist")[rng.integers(3)]
                dets.append(det(b.tolist(), float(np.round(rng.random(), 1)), t))
        gt[f"{i:06d}"], dt[f"{i:06d}"] = labels, dets
    return gt, dt


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_literal_devkit_port(seed):
    gt, dt = _random_images(np.random.default_rng(seed), 40)
    res = evaluate(gt, dt)
    images = [(gt[k], dt[k]) for k in gt]
    for cls in res.classes:
        for d in DIFFICULTIES:
            precision, n_gt = _devkit_precision(images, cls, d, IOU_THRESHOLDS[cls])
            assert res.results[cls][d.name].num_gt == n_gt
            np.testing.assert_array_equal(res.results[cls][d.name].precision, precision)


# --- the sample KITTI labels --------------------------------------------------------------------------

def _sample_label_dir() -> Path:
    for p in (Path("/work/shared/data/kitti_tiny/training/label_2"),
              Path(__file__).resolve().parents[1] / "assets" / "kitti_sample" / "training" / "label_2"):
        if p.is_dir() and any(p.glob("*.txt")):
            return p
    pytest.skip("no KITTI sample labels")


CLASSES = ("Car", "Pedestrian", "Cyclist")


@pytest.fixture(scope="module")
def sample():
    """Labels of the sample and detections = every Car/Pedestrian/Cyclist GT box, distinct scores."""
    label_dir = _sample_label_dir()
    gt = {p.stem: read_labels(p) for p in sorted(label_dir.glob("*.txt"))}
    dt, k = {}, 0
    for image_id, objs in gt.items():
        dt[image_id] = []
        for o in objs:
            if o.type in CLASSES:
                dt[image_id].append(det(o.bbox, 1.0 - k / 10000, o.type))
                k += 1
    return gt, dt, evaluate(gt, dt)


def _perfect_aps(n_gt):
    # All detections are TPs (precision 1). n_gt >= 41 keeps 41 thresholds: 100 / 100. n_gt <= 40 keeps
    # every TP score ((2i+3)/(2n) >= i/40 for all i), i.e. n_gt thresholds at positions 0..n_gt-1:
    # AP_R40 = (n_gt-1)/40, AP_R11 = (number of multiples of 4 below n_gt)/11.
    if n_gt >= 41:
        return 100.0, 100.0
    return 100 * (n_gt - 1) / 40, 100 * ((n_gt - 1) // 4 + 1) / 11


def test_sample_gt_boxes_as_detections(sample):
    _, _, res = sample
    assert res.results["Car"]["moderate"].num_gt >= 41  # the sample is big enough for a clean 100
    for cls in CLASSES:
        for d in DIFFICULTIES:
            r = res.results[cls][d.name]
            if r.num_gt:
                assert (r.ap_r40, r.ap_r11) == pytest.approx(_perfect_aps(r.num_gt)), (cls, d.name)


def _counts(o: KittiObject, cls: str, d) -> bool:
    """Whether a label is a valid GT of cls at difficulty d (the filter, written out independently)."""
    return (o.type == cls and o.occluded <= d.max_occlusion and o.truncated <= d.max_truncation
            and o.bbox[3] - o.bbox[1] >= d.min_height)


def test_sample_every_second_detection_dropped(sample):
    gt, _, full = sample
    objs = [(i, o) for i, labels in gt.items() for o in labels if o.type in CLASSES]
    kept = objs[::2]
    half = {i: [] for i in gt}
    for k, (i, o) in enumerate(kept):
        half[i].append(det(o.bbox, 1.0 - k / 10000, o.type))
    res = evaluate(gt, half)
    for cls in CLASSES:
        for d in DIFFICULTIES:
            r = res.results[cls][d.name]
            n_gt = sum(_counts(o, cls, d) for _, o in objs)
            tp = sum(_counts(o, cls, d) for _, o in kept)
            assert r.num_gt == n_gt
            if not n_gt:
                continue
            # Every detection is still a TP (precision 1); recall ends at tp/n_gt, about a half.
            assert 0.2 < tp / n_gt < 0.8
            if n_gt >= 41:
                # The curve is 1 up to recall tp/n_gt, then 0: AP_R40 = 100*tp/n_gt within one point (2.5).
                assert abs(r.ap_r40 - 100 * tp / n_gt) <= 2.5, (cls, d.name)
            else:
                assert r.ap_r40 == pytest.approx(100 * (tp - 1) / 40), (cls, d.name)  # every TP kept
            assert r.ap_r40 < full.results[cls][d.name].ap_r40


def test_sample_shifted_boxes_iou_06(sample):
    # Shift every box right by a quarter of its width: IoU = 0.75/1.25 = 0.6. Below Car's 0.7 (no TP:
    # AP 0), above Pedestrian's and Cyclist's 0.5 (all TP: same AP as exact boxes). Images where a shifted
    # box also overlaps another GT by > 0.5 are left out: there it may match its neighbour instead (a row
    # of parked cars) or, by the devkit's greedy max-overlap assignment, take a neighbour's place (two
    # pedestrians side by side in 000011).
    gt, dt, _ = sample

    def shift(o):
        w = o.bbox[2] - o.bbox[0]
        return det((o.bbox[0] + w / 4, o.bbox[1], o.bbox[2] + w / 4, o.bbox[3]), o.score, o.type)

    shifted = {i: [shift(o) for o in dets] for i, dets in dt.items()}

    def crowded(i):
        ious = iou_matrix([o.bbox for o in gt[i] if o.type != "DontCare"], [o.bbox for o in shifted[i]])
        return bool(np.any((ious > 0.5).sum(0) > 1))

    isolated = [i for i in gt if not crowded(i)]
    assert len(isolated) > 0.8 * len(gt)
    sub_gt = {i: gt[i] for i in isolated}
    exact = evaluate(sub_gt, {i: dt[i] for i in isolated})
    res = evaluate(sub_gt, {i: shifted[i] for i in isolated})
    for d in DIFFICULTIES:
        car = res.results["Car"][d.name]
        assert car.num_gt > 0 and (car.ap_r40, car.ap_r11) == (0.0, 0.0)
        for cls in ("Pedestrian", "Cyclist"):
            r, e = res.results[cls][d.name], exact.results[cls][d.name]
            assert r.num_gt > 0 and (r.ap_r40, r.ap_r11) == pytest.approx((e.ap_r40, e.ap_r11))
            assert len(r.thresholds) == min(r.num_gt, 41)  # every GT still a TP


# --- files and CLI ----------------------------------------------------------------------------------------

def _write(path: Path, objs):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(o.to_line() + "\n" for o in objs))


@pytest.fixture
def folders(tmp_path):
    labels, results = tmp_path / "kitti" / "training" / "label_2", tmp_path / "run" / "data"
    _write(labels / "000000.txt", [lab(BOX), lab((200, 0, 260, 80), "Pedestrian")])
    _write(labels / "000001.txt", [lab((300, 0, 400, 60)), lab((0, 100, 300, 200), "DontCare", -1, -1)])
    _write(results / "000000.txt", results_from_detections([BOX, (200, 0, 260, 80)], [0, 1], [0.9, 0.8],
                                                           ["car", "pedestrian"]))
    _write(results / "000001.txt", [det((300, 0, 400, 60), 0.7)])
    (tmp_path / "kitti" / "val.txt").write_text("000000\n000001\n000002\n")
    _write(labels / "000002.txt", [lab((500, 0, 600, 60))])
    return tmp_path


def test_evaluate_folders_missing_result_file_is_no_detections(folders):
    labels, results = folders / "kitti" / "training" / "label_2", folders / "run" / "data"
    assert evaluate_folders(labels, results).results["Car"]["easy"].num_gt == 2  # result files only
    res = evaluate_folders(labels, results, ids=["000000", "000001", "000002"])
    car = res.results["Car"]["easy"]
    # 3 GT, 2 TP (0.9, 0.7): thresholds at i=0 and the last, i=1 -> precision 1 at positions 0 and 1.
    assert (car.num_gt, car.ap_r40, car.ap_r11) == (3, pytest.approx(100 / 40), pytest.approx(100 / 11))
    assert car.recall[1] == pytest.approx(2 / 3)


def test_cli_writes_metrics_and_curves(folders, capsys):
    out = folders / "out"
    rc = main(["kitti-eval", str(folders / "kitti"), str(folders / "run" / "data"),
               "--split", "val.txt", "--classes", "car", "Pedestrian", "--output", str(out)])
    assert rc == 0
    assert "Pedestrian" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["metric"] == "KITTI 2D bbox AP (official devkit rules)"
    assert m["classes"]["Car"]["easy"]["num_gt"] == 3
    assert set(m["mean"]) == {"easy", "moderate", "hard"}
    assert (out / "pr_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_default_output_is_result_dir_parent(folders):
    assert main(["kitti-eval", str(folders / "kitti" / "training" / "label_2"), str(folders / "run" / "data")]) == 0
    assert (folders / "run" / "metrics.json").is_file()


def test_cli_malformed_result_line(folders, capsys):
    bad = folders / "run" / "data" / "000001.txt"
    bad.write_text(det(BOX, 0.5).to_line() + "\nCar 0 0 0 1 2 3 4 1 1 1 1 1 1 0\n")  # 15 fields: no score
    rc = main(["kitti-eval", str(folders / "kitti"), str(folders / "run" / "data")])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{bad}:2" in err and "16 fields" in err


def test_cli_bad_iou_option(folders, capsys):
    assert main(["kitti-eval", str(folders / "kitti"), str(folders / "run" / "data"), "--iou", "Car"]) == 2
    assert "CLASS=THRESHOLD" in capsys.readouterr().err


def test_evaluate_and_report_in_memory(tmp_path, capsys):
    gt, dt = base()
    res = evaluate_and_report(gt, dt, ("car",), tmp_path / "val")
    assert res.results["Car"]["hard"].ap_r40 == pytest.approx(100.0)
    assert "Car" in capsys.readouterr().out
    assert json.loads((tmp_path / "val" / "metrics.json").read_text())["mean"]["easy"]["AP_R40"] == 100.0
    assert (tmp_path / "val" / "pr_curves.png").is_file()
