"""KITTI 2D bounding-box AP, rule for rule as the official object devkit (``evaluate_object.cpp``).

KITTI numbers are only comparable when every rule matches the devkit: difficulty filters, neighbouring
classes, DontCare areas, the minimum height on detections, strictly-greater IoU, its two matching modes
and its 41-point threshold sampling. Each step below names the devkit function it mirrors, including its
quirks (e.g. a too-small detection of *any* class may be assigned to, and so silence, a ground truth).

Speed: GT/detection pairs that can ever match (IoU above the threshold) are found once per image; the
devkit's greedy per-GT assignment then runs for all images (grouped by size) and all score thresholds at
once in numpy, so the full KITTI val split (3,769 images) takes seconds instead of minutes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from squeezedet.core.boxes import box_area, intersection_matrix, iou_matrix
from squeezedet.core.kitti import (
    KITTI_TYPES,
    KittiObject,
    kitti_name_for,
    read_labels,
    read_results,
)
from squeezedet.errors import DataError

#: Recall sample points of the devkit (0, 1/40, ..., 1).
N_SAMPLE_PTS = 41


@dataclass(frozen=True)
class Difficulty:
    """Which ground truth counts at a difficulty level (devkit MIN_HEIGHT / MAX_OCCLUSION / MAX_TRUNCATION)."""

    name: str
    min_height: float  # pixels; applies to GT (float height) and detections (height truncated to int)
    max_occlusion: int
    max_truncation: float


DIFFICULTIES = (
    Difficulty("easy", 40, 0, 0.15),
    Difficulty("moderate", 25, 1, 0.30),
    Difficulty("hard", 25, 2, 0.50),
)
DEFAULT_CLASSES = ("Car", "Pedestrian", "Cyclist")
#: Devkit MIN_OVERLAP for 2D boxes; a match needs IoU strictly greater than this.
IOU_THRESHOLDS = {"Car": 0.7, "Pedestrian": 0.5, "Cyclist": 0.5}
#: Threshold for the classes the devkit does not score (Van, Truck, ...).
DEFAULT_IOU_THRESHOLD = 0.5
#: GT of these types is "ignored" for the key class: detections on them are neither TP nor FP.
NEIGHBOUR_CLASSES = {"Car": ("Van",), "Pedestrian": ("Person_sitting",)}


@dataclass
class ClassResult:
    """AP of one class at one difficulty, plus the devkit's 41-point curve for plotting."""

    ap_r40: float  # percent; NaN when the class has no valid GT at this difficulty
    ap_r11: float
    precision: np.ndarray  # [41] interpolated precision at the i-th sampled score threshold (0 past the last)
    recall: np.ndarray  # [41] recall at that threshold (NaN past the last)
    thresholds: np.ndarray  # the sampled score thresholds, at most 41, descending
    num_gt: int  # valid GT: the recall denominator
    num_det: int  # detections of the class at least min_height tall


@dataclass
class EvalResult:
    """Per class x difficulty results of one evaluation."""

    classes: tuple[str, ...]
    iou_thresholds: dict[str, float]
    results: dict[str, dict[str, ClassResult]]  # class -> difficulty name -> result
    num_images: int

    def mean(self) -> dict[str, dict[str, float]]:
        """Mean AP over classes per difficulty; classes without GT at that difficulty are left out."""
        out = {}
        for d in DIFFICULTIES:
            per = [self.results[c][d.name] for c in self.classes]
            out[d.name] = {key: _nanmean([getattr(r, attr) for r in per])
                           for key, attr in (("AP_R40", "ap_r40"), ("AP_R11", "ap_r11"))}
        return out


def _nanmean(values) -> float:
    vals = [v for v in values if not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def resolve_classes(classes, iou_thresholds: Mapping[str, float] | None = None) -> dict[str, float]:
    """KITTI type name -> IoU threshold for the requested classes (lower-case names like 'car' accepted)."""
    overrides = {kitti_name_for(k): float(v) for k, v in (iou_thresholds or {}).items()}
    out = {}
    for c in classes:
        name = kitti_name_for(c)
        if name not in KITTI_TYPES or name == "DontCare":
            raise DataError(f"unknown class {c!r} (KITTI types: {', '.join(KITTI_TYPES[:-1])})")
        thr = overrides.get(name, IOU_THRESHOLDS.get(name, DEFAULT_IOU_THRESHOLD))
        if not 0.0 <= thr < 1.0:
            raise DataError(f"IoU threshold of {name} must be in [0, 1), got {thr}")
        out[name] = thr
    if not out:
        raise DataError("no classes to evaluate")
    return out


@dataclass
class _Flat:
    """Every image's GT and detections concatenated (image order kept), with candidate pairs precomputed."""

    g_img: np.ndarray
    g_type: np.ndarray  # casefolded, as the devkit compares with strcasecmp
    g_height: np.ndarray
    g_trunc: np.ndarray
    g_occ: np.ndarray
    d_img: np.ndarray
    d_type: np.ndarray
    d_height: np.ndarray  # truncated to whole pixels, as the devkit's int32 cast
    d_score: np.ndarray
    d_dontcare: np.ndarray  # max over DontCare boxes of intersection / detection area
    p_gt: np.ndarray  # pairs (GT index, detection index, IoU) of the same image with IoU > min threshold
    p_det: np.ndarray
    p_iou: np.ndarray


def _flatten(gt, dt, ids, min_iou: float) -> _Flat:
    g_objs, d_objs, dc_boxes = [], [], []
    g_img, d_img, dc_img = [], [], []
    for i, image_id in enumerate(ids):
        for o in gt[image_id]:
            if o.type.casefold() == "dontcare":
                dc_boxes.append(o.bbox)
                dc_img.append(i)
            else:
                g_objs.append(o)
                g_img.append(i)
        for o in dt.get(image_id, ()):
            if o.score is None:
                raise DataError(f"image {image_id}: detection {o.type} {o.bbox} has no score")
            d_objs.append(o)
            d_img.append(i)
    g_box = np.asarray([o.bbox for o in g_objs], np.float64).reshape(-1, 4)
    d_box = np.asarray([o.bbox for o in d_objs], np.float64).reshape(-1, 4)
    dc_box = np.asarray(dc_boxes, np.float64).reshape(-1, 4)
    g_img, d_img, dc_img = (np.asarray(a, np.int64) for a in (g_img, d_img, dc_img))

    n = len(ids)
    g_off, d_off, dc_off = (np.searchsorted(a, np.arange(n + 1)) for a in (g_img, d_img, dc_img))
    d_dontcare = np.zeros(len(d_objs))
    pairs_g, pairs_d, pairs_iou = [], [], []
    for i in np.unique(d_img):
        ds, de = d_off[i], d_off[i + 1]
        gs, ge = g_off[i], g_off[i + 1]
        if ge > gs:
            iou = iou_matrix(g_box[gs:ge], d_box[ds:de])
            gi, dj = np.nonzero(iou > min_iou)
            pairs_g.append(gi + gs)
            pairs_d.append(dj + ds)
            pairs_iou.append(iou[gi, dj])
        cs, ce = dc_off[i], dc_off[i + 1]
        if ce > cs:
            inter = intersection_matrix(d_box[ds:de], dc_box[cs:ce]).max(axis=1)
            area = box_area(d_box[ds:de])
            d_dontcare[ds:de] = np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return _Flat(
        g_img=g_img,
        g_type=np.asarray([o.type.casefold() for o in g_objs], dtype=str),
        g_height=g_box[:, 3] - g_box[:, 1],
        g_trunc=np.asarray([o.truncated for o in g_objs], np.float64),
        g_occ=np.asarray([o.occluded for o in g_objs], np.float64),
        d_img=d_img,
        d_type=np.asarray([o.type.casefold() for o in d_objs], dtype=str),
        d_height=np.trunc(np.abs(d_box[:, 3] - d_box[:, 1])),
        d_score=np.asarray([o.score for o in d_objs], np.float64),
        d_dontcare=d_dontcare,
        p_gt=cat(pairs_g, np.int64),
        p_det=cat(pairs_d, np.int64),
        p_iou=cat(pairs_iou, np.float64),
    )


@dataclass
class _Bucket:
    """Images with a similar number of matchable GTs, padded to [M images, G GTs, D detections]."""

    overlap: np.ndarray  # [M, G, D] IoU of candidate pairs, 0 elsewhere (never > threshold)
    gt_flag: np.ndarray  # [M, G] devkit ignored_gt: 0 valid, 1 ignored, -1 padding
    det_flag: np.ndarray  # [M, D] devkit ignored_det: 0 valid, 1 too small, -1 padding
    score: np.ndarray  # [M, D]
    counted: np.ndarray  # [M, D] valid and not inside a DontCare area: an FP if left unassigned


def _buckets(f: _Flat, gt_flag, det_flag, counted, iou_thr: float) -> tuple[list[_Bucket], int]:
    """Group the matchable GT/detections by image; also return the valid GTs that can never match (FN)."""
    keep = (f.p_iou > iou_thr) & (gt_flag[f.p_gt] != -1) & (det_flag[f.p_det] != -1)
    gk, g_of_pair = np.unique(f.p_gt[keep], return_inverse=True)  # sorted = image order, then file order
    dk, d_of_pair = np.unique(f.p_det[keep], return_inverse=True)
    never_matched_fn = int(np.sum(gt_flag == 0) - np.sum(gt_flag[gk] == 0))
    if not len(gk):
        return [], never_matched_fn
    g_img, d_img = f.g_img[gk], f.d_img[dk]
    g_local = np.arange(len(gk)) - np.searchsorted(g_img, g_img)  # rank within its image
    d_local = np.arange(len(dk)) - np.searchsorted(d_img, d_img)
    images, img_of_g, n_g = np.unique(g_img, return_inverse=True, return_counts=True)
    img_of_d = np.searchsorted(images, d_img)
    n_d = np.bincount(img_of_d, minlength=len(images))
    size = np.ceil(np.log2(n_g)).astype(np.int64)  # padding to powers of two wastes at most half

    out = []
    for s in np.unique(size):
        in_bucket = size == s
        row = np.full(len(images), -1)
        row[in_bucket] = np.arange(in_bucket.sum())
        m, g, d = int(in_bucket.sum()), int(n_g[in_bucket].max()), int(n_d[in_bucket].max())
        b = _Bucket(np.zeros((m, g, d)), np.full((m, g), -1, np.int8), np.full((m, d), -1, np.int8),
                    np.zeros((m, d)), np.zeros((m, d), bool))
        gm = row[img_of_g] >= 0
        b.gt_flag[row[img_of_g[gm]], g_local[gm]] = gt_flag[gk[gm]]
        dm = row[img_of_d] >= 0
        r, c = row[img_of_d[dm]], d_local[dm]
        b.det_flag[r, c] = det_flag[dk[dm]]
        b.score[r, c] = f.d_score[dk[dm]]
        b.counted[r, c] = counted[dk[dm]]
        pm = gm[g_of_pair]
        b.overlap[row[img_of_g[g_of_pair[pm]]], g_local[g_of_pair[pm]], d_local[d_of_pair[pm]]] = \
            f.p_iou[keep][pm]
        out.append(b)
    return out, never_matched_fn


def _assign(b: _Bucket, iou_thr: float, thresholds: np.ndarray | None):
    """The GT loop of the devkit's computeStatistics, for every image of a bucket and threshold at once.

    thresholds None is compute_fp=false: each GT (in file order) takes the highest-scoring unassigned
    candidate. Otherwise compute_fp=true per score threshold: detections below it are dropped and each GT
    takes the candidate with the largest overlap, a too-small one only if no valid one overlaps.
    Returns TP, FN and assigned-counted-detection totals per threshold, and the TP scores.
    """
    by_score = thresholds is None
    live = b.det_flag != -1
    avail = live[None] if by_score else live[None] & (b.score[None] >= thresholds[:, None, None])
    n_t = avail.shape[0]
    assigned = np.zeros(avail.shape, bool)
    valid = b.det_flag == 0
    tp, fn = np.zeros(n_t, np.int64), np.zeros(n_t, np.int64)
    tp_scores = []
    for g in range(b.gt_flag.shape[1]):
        overlap = b.overlap[:, g, :]
        cand = avail & ~assigned & (overlap > iou_thr)[None]
        has = cand.any(-1)
        if by_score:
            j = np.where(cand, b.score[None], -np.inf).argmax(-1)  # ties: first in file, as strict '>'
        else:
            cand_valid = cand & valid[None]
            j = np.where(cand_valid.any(-1), np.where(cand_valid, overlap[None], -1.0).argmax(-1),
                         cand.argmax(-1))
        gt_valid = b.gt_flag[:, g] == 0
        fn += (~has & gt_valid[None]).sum(-1)
        t_i, m_i = np.nonzero(has)
        j_i = j[t_i, m_i]
        assigned[t_i, m_i, j_i] = True
        is_tp = gt_valid[m_i] & valid[m_i, j_i]  # an ignored GT or a too-small detection: neither TP nor FP
        tp += np.bincount(t_i[is_tp], minlength=n_t)
        if by_score:
            tp_scores.append(b.score[m_i[is_tp], j_i[is_tp]])
    assigned_counted = (assigned & b.counted[None]).sum(axis=(1, 2))
    return tp, fn, assigned_counted, tp_scores


def sample_thresholds(tp_scores, n_gt: int) -> np.ndarray:
    """Devkit getThresholds: the TP scores whose recall is nearest to each of the 41 sample points.

    Kept as the devkit's scalar loop (same float operations in the same order) so the selected
    thresholds are bit-identical; it runs over TP scores only, a few thousand at most.
    """
    v = np.sort(np.asarray(tp_scores, np.float64))[::-1]
    out = []
    current = 0.0
    last = len(v) - 1
    for i, s in enumerate(v):
        left = (i + 1) / n_gt
        right = (i + 2) / n_gt if i < last else left
        if i < last and (right - current) < (current - left):
            continue
        out.append(s)
        current += 1.0 / (N_SAMPLE_PTS - 1.0)
    return np.asarray(out, np.float64)


def average_precisions(precision: np.ndarray) -> tuple[float, float]:
    """(AP_R40, AP_R11) in percent from the 41 interpolated precisions, as the devkit sums them."""
    return float(precision[1:].sum() / 40 * 100), float(precision[::4].sum() / 11 * 100)


def _evaluate_class(f: _Flat, name: str, diff: Difficulty, iou_thr: float) -> ClassResult:
    """Devkit eval_class for one class and difficulty (cleanData + two computeStatistics passes)."""
    cls = name.casefold()
    is_cls = f.g_type == cls
    is_neighbour = np.zeros(len(f.g_type), bool)
    for n in NEIGHBOUR_CLASSES.get(name, ()):
        is_neighbour |= f.g_type == n.casefold()
    hidden = (f.g_occ > diff.max_occlusion) | (f.g_trunc > diff.max_truncation) | (f.g_height < diff.min_height)
    gt_flag = np.full(len(f.g_type), -1, np.int8)
    gt_flag[is_neighbour | (is_cls & hidden)] = 1
    gt_flag[is_cls & ~hidden] = 0
    # cleanData: a detection below min height is flagged 1 whatever its class (devkit quirk, kept).
    det_flag = np.where(f.d_height < diff.min_height, 1, np.where(f.d_type == cls, 0, -1)).astype(np.int8)
    counted = (det_flag == 0) & ~(f.d_dontcare > iou_thr)
    n_gt = int(np.sum(gt_flag == 0))

    buckets, never_matched_fn = _buckets(f, gt_flag, det_flag, counted, iou_thr)
    tp_scores = [s for b in buckets for s in _assign(b, iou_thr, None)[3]]
    thresholds = sample_thresholds(np.concatenate(tp_scores) if tp_scores else [], n_gt)

    n_t = len(thresholds)  # <= 41: each TP is a distinct valid GT, so recall never passes 1
    tp, fn, assigned_counted = (np.zeros(n_t, np.int64) for _ in range(3))
    if n_t:
        for b in buckets:
            b_tp, b_fn, b_assigned, _ = _assign(b, iou_thr, thresholds)
            tp += b_tp
            fn += b_fn
            assigned_counted += b_assigned
    fn += never_matched_fn
    counted_scores = np.sort(f.d_score[counted])
    above = len(counted_scores) - np.searchsorted(counted_scores, thresholds, side="left")
    fp = above - assigned_counted  # unassigned, not in a DontCare area, score >= threshold

    precision = np.zeros(N_SAMPLE_PTS)
    recall = np.full(N_SAMPLE_PTS, np.nan)
    precision[:n_t] = np.divide(tp, tp + fp, out=np.zeros(n_t), where=(tp + fp) > 0)
    recall[:n_t] = np.divide(tp, tp + fn, out=np.full(n_t, np.nan), where=(tp + fn) > 0)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    ap_r40, ap_r11 = average_precisions(precision) if n_gt else (float("nan"), float("nan"))
    return ClassResult(ap_r40, ap_r11, precision, recall, thresholds, n_gt, int(np.sum(det_flag == 0)))


def evaluate(
    gt: Mapping[str, Sequence[KittiObject]],
    dt: Mapping[str, Sequence[KittiObject]],
    classes: Sequence[str] = DEFAULT_CLASSES,
    iou_thresholds: Mapping[str, float] | None = None,
) -> EvalResult:
    """KITTI 2D AP of detections ``dt`` against labels ``gt`` (both image id -> objects).

    Every image in ``gt`` is evaluated; one absent from ``dt`` has no detections. Detections of an image
    without labels are an error (the devkit needs a label file for every result file).
    """
    extra = [k for k in dt if k not in gt]
    if extra:
        raise DataError(f"detections for {len(extra)} image(s) without labels, e.g. {extra[0]!r}")
    thr = resolve_classes(classes, iou_thresholds)
    ids = list(gt)
    if not ids:
        raise DataError("no images to evaluate")
    flat = _flatten(gt, dt, ids, min(thr.values()))
    results = {name: {d.name: _evaluate_class(flat, name, d, t) for d in DIFFICULTIES} for name, t in thr.items()}
    return EvalResult(tuple(thr), thr, results, len(ids))


def evaluate_folders(
    label_dir,
    result_dir,
    ids: Sequence[str] | None = None,
    classes: Sequence[str] = DEFAULT_CLASSES,
    iou_thresholds: Mapping[str, float] | None = None,
) -> EvalResult:
    """Evaluate result files (16 fields a line) against label files, both named ``<id>.txt``.

    ids None evaluates every result file, as the devkit does; with ids, a missing result file means no
    detections. A malformed line raises DataError naming the file and line.
    """
    label_dir, result_dir = Path(label_dir), Path(result_dir)
    if not result_dir.is_dir():
        raise DataError(f"{result_dir}: result folder not found")
    if not label_dir.is_dir():
        raise DataError(f"{label_dir}: label folder not found")
    if ids is None:
        ids = sorted(p.stem for p in result_dir.glob("*.txt"))
        if not ids:
            raise DataError(f"{result_dir}: no result files (*.txt)")
    gt = {i: read_labels(label_dir / f"{i}.txt") for i in ids}
    dt = {i: read_results(result_dir / f"{i}.txt") for i in ids}
    return evaluate(gt, dt, classes, iou_thresholds)
