"""The bundled demo model: it detects the cars of the bundled clip, and MODEL_CARD.md's numbers are what
`squeezedet val` gives (so the card cannot drift from the file)."""

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


def test_bundled_model_detects_the_cars_of_the_clip():
    predictor = TFLitePredictor(MODEL, num_threads=2)
    assert predictor.meta.quantization == "int8" and predictor.model.input_dtype == np.uint8
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    frames_with_cars = 0
    for index in range(38):
        ok, frame = cap.read()
        assert ok
        dets = predictor.predict(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), score_threshold=0.5)
        cars = dets.boxes[dets.labels == 0]
        if len(cars) >= 2:
            frames_with_cars += 1
        if index == 0:
            # each hand-marked car overlaps a confident car box (the white car's box is often partial:
            # IoU about 0.5, see MODEL_CARD.md)
            assert (iou_matrix(CARS_FRAME0, cars).max(axis=1) > 0.4).all()
    assert frames_with_cars == 38


@pytest.mark.slow
def test_model_card_numbers_are_reproduced_by_val(tmp_path):
    from squeezedet.cli import main

    assert main(["val", "--model", str(MODEL), "--config", str(REPO / "configs/demo_model.yaml"),
                 "--data", str(SAMPLE_ROOT), "--split", "val.txt", "--output", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    card = (REPO / "MODEL_CARD.md").read_text()
    row = re.search(r"\*\*TFLite int8 \(this file\)\*\* \| Car \| ([\d.]+) / ([\d.]+) \| ([\d.]+) / ([\d.]+) \| "
                    r"([\d.]+) / ([\d.]+)", card)
    assert row, "int8 Car row not found in MODEL_CARD.md"
    car = metrics["classes"]["Car"]
    measured = [car[d][k] for d in ("easy", "moderate", "hard") for k in ("AP_R40", "AP_R11")]
    assert measured == pytest.approx([float(v) for v in row.groups()], abs=0.006)
