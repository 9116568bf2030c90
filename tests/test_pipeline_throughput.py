"""The detector thread runs the engine only: cameras resize when they hand a frame in and decode when they
collect it, and a camera hands in frame N+1 before it tracks frame N. Same detections as Detector.detect."""

import threading
import time

import numpy as np
import pytest
from pipeline_helpers import (  # noqa: F401 - fixtures
    GREEN,
    RED,
    car_video_fixture,
    cell_rect_frame,
    edge_config,
    expected_box,
    tiny_model_fixture,
    tiny_models_fixture,
)

from pipeline.camera import CameraWorker
from pipeline.config import EdgeConfig
from pipeline.daemon import Daemon
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


def test_an_idle_detector_starts_the_frame_before_submit_returns(tiny_model):
    """After submit the camera goes on to Python work that holds the GIL; had submit returned first, the
    detector thread would wait for the GIL to start the engine (1.5 ms median between frames on the sample
    clip). So submit to an idle detector returns only once the engine has the frame; to a busy detector
    (another camera's frame running) it returns at once, and the frame waits its turn."""
    det = Detector(tiny_model, num_threads=1)
    started = []
    original = det.raw

    def raw(batch):
        started.append(time.perf_counter())
        time.sleep(0.2)
        return original(batch)

    det.raw = raw
    shared = SharedDetector(det, ["a", "b"])
    shared.start()
    frame = cell_rect_frame([(1, 2, RED)])
    try:
        req_a = shared.submit("a", frame)
        returned_a = time.perf_counter()
        assert len(started) == 1 and started[0] <= returned_a and req_a.released.is_set()
        t0 = time.perf_counter()
        req_b = shared.submit("b", frame)
        assert time.perf_counter() - t0 < 0.05  # no wait (the hand-off bound is 0.1 s, a runs for 0.2 s)
        assert len(started) == 1 and not req_b.released.is_set()
        assert len(shared.wait(req_a).detections) == 1 and len(shared.wait(req_b).detections) == 1
        assert len(started) == 2 and req_b.released.is_set()
    finally:
        shared.stop()


def test_a_camera_queued_behind_another_stops_waiting_once_the_detector_runs(tiny_model):
    """Two cameras hand in frames while the detector is idle; round robin runs one of them first. The other
    camera must not sit in submit() for that whole inference: picking any frame releases every waiting one."""
    shared = SharedDetector(Detector(tiny_model, num_threads=1), ["a", "b"])  # not started: submit cannot wait
    frame = cell_rect_frame([(1, 2, RED)])
    req_b, req_a = shared.submit("b", frame), shared.submit("a", frame)
    assert not req_a.released.is_set() and not req_b.released.is_set()
    name, req = shared._take()  # what the detector thread does next
    assert (name, req) == ("a", req_a)  # round robin starts at the first camera
    assert req_a.released.is_set() and req_b.released.is_set()
    shared.stop()
    assert req_b.done.is_set() and isinstance(req_b.error, RuntimeError)  # stop() fails what is still queued


ENGINE_S, PREPARE_S, DECODE_S, BOOKKEEPING_S = 0.060, 0.008, 0.008, 0.025


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_pipelined_camera_keeps_the_detector_busy(mode, tiny_model, car_video, monkeypatch):
    """Engine 60 ms; the camera's resize 8 ms, raw-output decode 8 ms, tracking/reporting 25 ms a frame (all
    sleep: the timing is the logic's, not the CPU's). Pipelined (the default), the camera resizes frame N+1
    while N runs, hands it in the moment N leaves the engine, and only then decodes and tracks N: the engine
    barely idles between frames. Resizing after the wait, or decoding before the hand-in, would leave gaps of
    8 ms or more; with pipeline off the engine idles for all of it (>= 41 ms)."""
    spans = []
    raw, prepare, decode, process = Detector.raw, Detector.prepare, Detector.decode, CameraWorker._process

    def slow(seconds, fn):
        def wrapped(*args, **kwargs):
            time.sleep(seconds)
            return fn(*args, **kwargs)
        return wrapped

    def slow_raw(self, batch):
        start = time.monotonic()
        out = raw(self, batch)
        time.sleep(max(0.0, ENGINE_S - (time.monotonic() - start)))
        spans.append((start, time.monotonic()))
        return out

    monkeypatch.setattr(Detector, "raw", slow_raw)
    monkeypatch.setattr(Detector, "prepare", slow(PREPARE_S, prepare))
    monkeypatch.setattr(Detector, "decode", slow(DECODE_S, decode))
    monkeypatch.setattr(CameraWorker, "_process", slow(BOOKKEEPING_S, process))
    cfg = EdgeConfig.model_validate(edge_config(tiny_model, car_video, run={"max_frames": 12, "pipeline": mode}))
    daemon = Daemon(cfg)
    assert daemon.run() == 0
    assert daemon.frames == 12 and daemon.errors == 0 and len(spans) == 12  # the load-time dry run is not raw()
    gaps = sorted(b[0] - a[1] for a, b in zip(spans[1:], spans[2:]))  # from the second frame on
    if mode == "auto":
        assert gaps[len(gaps) // 2] < 0.004 and gaps[-1] < PREPARE_S, gaps
    else:
        assert gaps[0] >= PREPARE_S + DECODE_S + BOOKKEEPING_S, gaps


def test_daemon_sets_opencv_threads(tiny_model, car_video):
    import cv2

    before = cv2.getNumThreads()
    try:
        for threads, expected in ((1, 1), (None, cv2.getNumberOfCPUs())):
            daemon = Daemon(EdgeConfig.model_validate(edge_config(tiny_model, car_video,
                                                                  run={"opencv_threads": threads})))
            assert cv2.getNumThreads() == expected
            for camera in daemon.cameras.values():  # opened, never started: release the video file
                camera.source.stop()
    finally:
        cv2.setNumThreads(before)


def test_camera_reports_ended_after_its_last_frame(tiny_model, car_video, monkeypatch):
    """The reader reaches the end of the file while frames are still queued and one is in the detector:
    the camera's 'ended' status (its MQTT availability goes offline with it) follows its last frame."""
    from pipeline.reporter import Reporter

    calls = []
    frame, status = Reporter.frame, Reporter.status
    monkeypatch.setattr(Reporter, "frame", lambda self, index, *a, **k: calls.append(("frame", index))
                        or frame(self, index, *a, **k))
    monkeypatch.setattr(Reporter, "status", lambda self, **f: calls.append(("status", f.get("state")))
                        or status(self, **f))
    daemon = Daemon(EdgeConfig.model_validate(edge_config(tiny_model, car_video, run={"max_frames": None})))
    assert daemon.run() == 0 and daemon.frames == 20
    ended = calls.index(("status", "ended"))
    assert calls[ended - 1] == ("frame", 19)
    assert [c for c in calls if c[0] == "frame"] == [("frame", i) for i in range(20)]
