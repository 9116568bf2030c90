"""The bundled model (the SqueezeDet authors' KITTI weights, imported and exported to int8): it finds the
cars of the bundled clip with tight boxes and one stable track each, it scores Car moderate AP_R40 >= 90 on
the sample val split, and MODEL_CARD.md's numbers are what `squeezedet val` gives (so the card cannot
drift from the file)."""

import json
import re

import cv2
import numpy as np
import pytest
from conftest import ASSETS, DEMO_CLIP, REPO, SAMPLE_ROOT

from squeezedet.core.boxes import iou_matrix
from squeezedet.inference import TFLitePredictor

MODEL = ASSETS / "models" / "squeezedet_kitti_int8.tflite"
#: The two cars in the clip's first frame, by hand from the video (x1, y1, x2, y2 at 1280x720).
CARS_FRAME0 = np.array([[812, 410, 932, 495], [1005, 405, 1170, 490]], np.float32)


def _frames():
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def test_bundled_model_is_the_authors_geometry_in_int8():
    predictor = TFLitePredictor(MODEL, num_threads=2)
    meta = predictor.meta
    assert meta.quantization == "int8" and predictor.model.input_dtype == np.uint8
    assert (meta.input_width, meta.input_height, meta.padding, meta.convdet_kernel) == (960, 288, "same", 1)
    assert meta.grid_size == (60, 18) and len(predictor.anchors) == 9720
    assert meta.class_names == ["car", "pedestrian", "cyclist"]


def test_bundled_model_finds_each_car_of_the_clip_with_a_tight_box():
    predictor = TFLitePredictor(MODEL, num_threads=2)
    frames = _frames()
    assert len(frames) == 38
    for index, frame in enumerate(frames):
        dets = predictor.predict(frame, score_threshold=0.5)
        cars = dets.boxes[dets.labels == 0]
        assert len(cars) >= 2, index
        if index == 0:
            ious = iou_matrix(CARS_FRAME0, cars).max(axis=1)
            assert (ious > 0.6).all(), ious  # hand-marked boxes (the old 75-image model reached ~0.5)


def test_demo_settings_give_one_stable_track_per_car():
    """configs/edge_file.yaml's decode + tracker settings on the whole clip: exactly two tracks, the black
    and the white car, each from its confirmation (frame 2) to the last frame, never restarted."""
    import yaml

    from pipeline.config import TrackerConfig
    from pipeline.detector import Detector
    from pipeline.tracker import Tracker

    demo = yaml.safe_load((REPO / "configs" / "edge_file.yaml").read_text())
    cam = demo["cameras"][0] if "cameras" in demo else demo
    model, tracker_cfg = cam.get("model", demo.get("model")), cam.get("tracker", demo.get("tracker"))
    det = Detector(MODEL, num_threads=2, score_threshold=model["score_threshold"],
                   nms_threshold=model["nms_threshold"])
    tracker = Tracker(TrackerConfig(**tracker_cfg))
    seen: dict[int, list[int]] = {}
    frames = _frames()
    for index, frame in enumerate(frames):
        d = det.detect(frame)
        out = tracker.update(d.boxes, d.scores, [det.class_names[i] for i in d.labels], index)
        for obj in out.objects:
            seen.setdefault(obj.track_id, []).append(index)
    assert sorted(seen) == [1, 2], seen
    for frames_of_track in seen.values():
        assert frames_of_track == list(range(2, len(frames)))


def _card_row(card: str, label: str) -> list[float]:
    row = re.search(re.escape(label) + r" \| Car \| ([\d.]+) / ([\d.]+) \| ([\d.]+) / ([\d.]+) \| ([\d.]+) / ([\d.]+)",
                    card)
    assert row, f"{label} Car row not found in MODEL_CARD.md"
    return [float(v) for v in row.groups()]


@pytest.mark.slow
def test_model_card_numbers_are_reproduced_by_val(tmp_path):
    from squeezedet.cli import main

    assert main(["val", "--model", str(MODEL), "--data", str(SAMPLE_ROOT), "--split", "val.txt",
                 "--output", str(tmp_path)]) == 0
    car = json.loads((tmp_path / "metrics.json").read_text())["classes"]["Car"]
    measured = [car[d][k] for d in ("easy", "moderate", "hard") for k in ("AP_R40", "AP_R11")]
    card = (REPO / "MODEL_CARD.md").read_text()
    int8 = _card_row(card, "**TFLite int8 (this file)**")
    fp32 = _card_row(card, "Keras fp32 (imported)")
    assert measured == pytest.approx(int8, abs=0.006)
    assert car["moderate"]["AP_R40"] >= 90.0
    assert abs(int8[2] - fp32[2]) <= 1.0  # int8 within one AP point of its float import, Car moderate
