"""End to end: weights trained here -> .tflite exported here -> the daemon on the real dashcam clip ->
a real mosquitto -> a real subscriber; its boxes must be the boxes `squeezedet predict` finds."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import DEMO_CLIP, REPO
from pipeline_helpers import Collector, broker_fixture, edge_config, write_config  # noqa: F401

from squeezedet.core.boxes import iou_matrix
from squeezedet.core.kitti import read_results

FRAMES = 12
LOW_SCORE = 0.05  # the overfit test model is unsure on a dashcam: keep weak boxes so there is much to compare


@pytest.fixture(scope="module")
def exported(tiny_trained, tmp_path_factory):
    from squeezedet.export.exporter import export_tflite

    out = tmp_path_factory.mktemp("e2e") / "tiny_int8.tflite"
    return export_tflite(tiny_trained.config, tiny_trained.weights_path, out, quantize="int8",
                         calib_root=tiny_trained.data_root, calib_images=4, calib_split="train", check_images=0)


@pytest.mark.slow
@pytest.mark.broker
def test_daemon_publishes_the_boxes_predict_finds(exported, broker, tmp_path):
    sub = Collector(broker.port, topics=("sd/#",))
    cfg = edge_config(
        exported, DEMO_CLIP, broker.port,
        model={"score_threshold": LOW_SCORE},
        tracker={"min_hits": 1, "threshold": 0.0, "max_missed": 1},
        run={"max_frames": FRAMES, "output_video": str(tmp_path / "annotated.mp4")},
    )
    r = subprocess.run([sys.executable, "-m", "pipeline", "--config", str(write_config(tmp_path / "edge.yaml", cfg))],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert sub.wait_for(lambda: sub.last("sd/availability") == "offline", 10)
    frames = sub.json("sd/test_cam/detections")
    sub.close()
    assert [f["frame"] for f in frames] == list(range(FRAMES))
    assert all(f["image"] == {"width": 1280, "height": 720} for f in frames)

    pred = tmp_path / "pred"
    r = subprocess.run([sys.executable, "-m", "squeezedet.cli", "predict", "--model", str(exported), "--source",
                        str(DEMO_CLIP), "--output", str(pred), "--score-threshold", str(LOW_SCORE)],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr

    compared = 0
    for f in frames:
        ref = read_results(pred / "results" / f"{f['frame']:06d}.txt", missing_ok=False)
        ref_boxes = np.array([o.bbox for o in ref], np.float32).reshape(-1, 4)
        for obj in f["objects"]:
            if obj["missed"]:
                continue  # a track kept alive through a miss has no box of this frame
            ious = iou_matrix(np.array([obj["box"]]), ref_boxes)[0]
            j = int(np.argmax(ious))
            assert ious[j] > 0.999, (f["frame"], obj, ref_boxes)
            assert ref[j].type.lower() == obj["label"]
            assert ref[j].score == pytest.approx(obj["score"], abs=2e-4)
            compared += 1
    assert compared >= 5, f"only {compared} published boxes to compare"
    assert (tmp_path / "annotated.mp4").stat().st_size > 10_000
