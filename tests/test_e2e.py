"""End to end: weights trained here -> .tflite exported here -> the daemon on a real video file ->
a real mosquitto -> a real subscriber; its boxes must be the boxes `squeezedet predict` finds.

The video is made of the KITTI frames the tiny model was overfitted on (as 1280x720 H.264-style mp4):
what such a model finds on a dashcam clip it never saw depends on the CPU's numerics (oneDNN on or off
trains a different tiny model), and from zero boxes nothing can be compared."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import OVERFIT_IDS, REPO
from pipeline_helpers import Collector, broker_fixture, edge_config, write_config  # noqa: F401

from squeezedet.core.boxes import iou_matrix
from squeezedet.core.kitti import read_results

FRAMES = 12
LOW_SCORE = 0.05  # keep weak boxes too, so there is much to compare


@pytest.fixture(scope="module")
def overfit_clip(tiny_trained, tmp_path_factory):
    """The 4 overfitted KITTI frames, three times over, as a 1280x720 mp4 (a camera's frame size)."""
    import cv2

    from squeezedet.data.kitti_dataset import find_kitti_dirs

    image_dir, _ = find_kitti_dirs(tiny_trained.data_root)
    frames = [cv2.resize(cv2.imread(str(next(image_dir.glob(f"{i}.*")))), (1280, 720)) for i in OVERFIT_IDS]
    path = tmp_path_factory.mktemp("clip") / "overfit.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (1280, 720))
    assert writer.isOpened()
    for k in range(FRAMES):
        writer.write(frames[k % len(frames)])
    writer.release()
    return path


@pytest.fixture(scope="module")
def exported(tiny_trained, tmp_path_factory):
    from squeezedet.export.exporter import export_tflite

    out = tmp_path_factory.mktemp("e2e") / "tiny_int8.tflite"
    return export_tflite(tiny_trained.config, tiny_trained.weights_path, out, quantize="int8",
                         calib_root=tiny_trained.data_root, calib_images=4, calib_split="train", check_images=0)


@pytest.mark.slow
@pytest.mark.broker
def test_daemon_publishes_the_boxes_predict_finds(exported, overfit_clip, broker, tmp_path):
    sub = Collector(broker.port, topics=("sd/#",))
    cfg = edge_config(
        exported, overfit_clip, broker.port,
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
                        str(overfit_clip), "--output", str(pred), "--score-threshold", str(LOW_SCORE)],
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
