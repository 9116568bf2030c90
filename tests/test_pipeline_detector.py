"""Detector on the tiny deterministic model, live model swap, drawing, and the no-TensorFlow rule."""

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from pipeline_helpers import (  # noqa: F401 - fixtures
    GREEN,
    RED,
    cell_rect_frame,
    expected_box,
    install_model,
    tiny_model_fixture,
    tiny_models_fixture,
)

from pipeline.config import ModelConfig
from pipeline.detector import Detector, ModelWatcher
from squeezedet.core.annotate import AnnotatedVideoWriter, draw_detections
from squeezedet.core.metadata import read_metadata, write_metadata
from squeezedet.errors import ModelFileError

REPO = Path(__file__).resolve().parents[1]


def test_detections_come_back_in_frame_pixels(tiny_model):
    det = Detector(tiny_model, num_threads=1)
    assert det.class_names == ["car", "person"] and det.model_id == "tiny_a"
    out = det.detect(cell_rect_frame([(1, 2, RED), (2, 5, GREEN)]))
    got = sorted(zip(out.labels.tolist(), out.scores.tolist(), out.boxes.tolist()))
    assert [g[0] for g in got] == [0, 1]
    assert got[0][1] > 0.99 and got[1][1] > 0.99
    np.testing.assert_allclose(got[0][2], expected_box(1, 2), atol=0.01)
    np.testing.assert_allclose(got[1][2], expected_box(2, 5), atol=0.01)
    assert det.last_inference_ms > 0


def test_score_matches_the_hand_set_weights(tiny_model):
    det = Detector(tiny_model, num_threads=1)
    out = det.detect(cell_rect_frame([(0, 0, RED, 0.55)]))  # conf = sigmoid(20 * 0.55 - 10)
    car = 1 / (1 + np.exp(-2 * 10 * 0.55))  # softmax of logits (+5.5, -5.5)
    assert out.scores.tolist() == pytest.approx([car / (1 + np.exp(-1.0))], abs=0.01)


def test_config_thresholds_override_metadata(tiny_model):
    frame = cell_rect_frame([(0, 0, RED, 0.5)])  # score 0.5
    assert len(Detector(tiny_model, num_threads=1).detect(frame)) == 1  # metadata threshold 0.3
    strict = Detector.from_config(ModelConfig(path=str(tiny_model), num_threads=1, score_threshold=0.6))
    assert len(strict.detect(frame)) == 0


def test_missing_corrupt_and_mismatched_models_are_one_line_errors(tiny_model, tmp_path):
    with pytest.raises(ModelFileError, match="nope.tflite: model file not found"):
        Detector(tmp_path / "nope.tflite")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    write_metadata(bad, read_metadata(tiny_model))
    with pytest.raises(ModelFileError, match="not a TFLite flatbuffer"):
        Detector(bad)
    meta = read_metadata(tiny_model)
    meta.class_names = ["car", "person", "cyclist"]  # 8 channels expected, model has 7
    write_metadata(tiny_model, meta)
    with pytest.raises(ModelFileError, match="output shape") as exc:
        Detector(tiny_model)
    assert "\n" not in str(exc.value)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.02)
    return predicate()


def replace_file(path, data: bytes):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_watcher_swaps_a_new_model_and_rejects_a_bad_one(tiny_models, tiny_model):
    loaded, rejected = [], []
    cfg = ModelConfig(path=str(tiny_model), num_threads=1, watch_interval_s=0.05)
    watcher = ModelWatcher(cfg, loaded.append, rejected.append)
    watcher.start()
    try:
        time.sleep(0.15)
        os.utime(tiny_model)  # touched, same content: nothing happens
        time.sleep(0.2)
        assert loaded == [] and rejected == []
        # sidecar and model are two files: between the two renames the pair may be seen (and
        # rejected) as out of sync; once both are in place the new model must be running
        install_model(tiny_models["tiny_b"], tiny_model)
        assert wait_until(lambda: loaded)
        assert [d.model_id for d in loaded] == ["tiny_b"]
        before = len(rejected)
        replace_file(tiny_model, b"TFL3 but truncated")  # a broken model
        assert wait_until(lambda: len(rejected) > before)
        assert "model_sha256 does not match" in rejected[-1] and len(loaded) == 1
        time.sleep(0.25)
        assert len(rejected) == before + 1  # reported once, not retried until the file changes
        watcher.request_reload()  # an explicit reload retries (and fails again)
        assert wait_until(lambda: len(rejected) == before + 2)
        install_model(tiny_models["tiny_a"], tiny_model)
        assert wait_until(lambda: len(loaded) == 2) and loaded[1].model_id == "tiny_a"
    finally:
        watcher.stop()


def test_draw_detections_marks_boxes_and_keeps_the_input():
    img = np.zeros((128, 256, 3), np.uint8)
    out = draw_detections(img, [[20, 30, 100, 90]], ["car"], [0.87], track_ids=[3])
    assert out.shape == img.shape and out.dtype == np.uint8 and img.sum() == 0
    assert out[30:91, 20].any() and out[60, 60:80].sum() == 0  # outline drawn, inside untouched


def test_annotated_video_appears_only_when_closed(tmp_path):
    path = tmp_path / "out" / "debug.avi"
    writer = AnnotatedVideoWriter(path, fps=5)
    for _ in range(3):
        writer.write(np.zeros((64, 96, 3), np.uint8))
    assert not path.exists()
    assert writer.close() == path
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 3 and list(path.parent.iterdir()) == [path]


def test_daemon_modules_never_import_tensorflow(tiny_model):
    code = (
        "import sys, numpy as np\n"
        "import pipeline, pipeline.daemon, pipeline.config, pipeline.sources, pipeline.detector,"
        " pipeline.tracker, pipeline.mqtt, pipeline.__main__\n"
        f"d = pipeline.detector.Detector({str(tiny_model)!r}, num_threads=1)\n"
        "d.detect(np.zeros((120, 200, 3), np.uint8))\n"
        "bad = [m for m in sys.modules if m == 'tensorflow' or m.startswith(('tensorflow.', 'keras'))]\n"
        "assert not bad, bad\n"
        "print('ok', d.runtime)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok", "ai_edge_litert"]


def test_a_model_loads_on_the_side_while_frames_run(tiny_models, tiny_model):
    """A second interpreter is built on another thread while the first keeps detecting; the frame
    loop reads the reference once per frame, so every frame runs whole on one model or the other."""
    holder = {"det": Detector(tiny_model, num_threads=1)}
    frame = cell_rect_frame([(1, 1, RED)])

    def frames():
        seen = []
        for _ in range(40):
            det = holder["det"]
            assert len(det.detect(frame)) == 1
            seen.append(det.model_id)
        return seen

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(frames)
        holder["det"] = Detector(tiny_models["tiny_b"], num_threads=1)
        seen = running.result()  # re-raises any failure of the frame thread
    assert seen == sorted(seen) and set(seen) <= {"tiny_a", "tiny_b"}
