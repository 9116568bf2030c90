"""The detector thread runs the engine only: cameras resize when they hand a frame in and decode when they
collect it, and a camera hands in frame N+1 before it tracks frame N. Same detections as Detector.detect."""

import threading

import numpy as np
from pipeline_helpers import (  # noqa: F401 - fixtures
    GREEN,
    RED,
    cell_rect_frame,
    expected_box,
    tiny_model_fixture,
    tiny_models_fixture,
)

from pipeline.detector import Detector
from pipeline.scheduler import SharedDetector


def test_submit_returns_at_once_and_wait_gives_the_detectors_detections(tiny_model):
    det = Detector(tiny_model, num_threads=1)
    frame = cell_rect_frame([(1, 2, RED), (2, 5, GREEN)])
    want = det.detect(frame)
    shared = SharedDetector(det, ["a"])
    calls = []
    original = det.raw
    det.raw = lambda batch: calls.append((threading.current_thread().name, batch.shape)) or original(batch)
    try:
        req = shared.submit("a", frame)  # not started yet: nothing runs, submit must not block
        assert req.batch.shape == (1, 64, 128, 3) and not req.done.is_set()
        shared.start()
        got = shared.wait(req)
    finally:
        shared.stop()
    assert calls == [("detector", (1, 64, 128, 3))]  # the detector thread ran the engine on the resized batch
    np.testing.assert_array_equal(got.detections.boxes, want.boxes)
    np.testing.assert_array_equal(got.detections.labels, want.labels)
    np.testing.assert_allclose(got.detections.boxes[np.argsort(got.detections.labels)],
                               [expected_box(1, 2), expected_box(2, 5)], atol=0.01)
    assert got.detector is det and got.inference_ms > 0


def test_a_swap_after_submit_runs_the_new_model_on_the_frame(tiny_models, tiny_model):
    old, new = Detector(tiny_model, num_threads=1), Detector(tiny_models["tiny_b"], num_threads=1)
    shared = SharedDetector(old, ["a"])
    req = shared.submit("a", cell_rect_frame([(1, 2, RED)]))
    shared.swap(new)
    shared.start()
    try:
        got = shared.wait(req)
    finally:
        shared.stop()
    assert got.detector is new and got.detector.model_id == "tiny_b"
    assert len(got.detections) == 1
