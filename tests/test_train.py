"""Training end to end on real KITTI sample images (tiny input so it runs in CI)."""

import json
import math

import numpy as np
import pytest
import yaml
from conftest import make_sample_subset, tiny_config_dict

from squeezedet.core.boxes import iou_matrix
from squeezedet.core.preprocess import read_image_rgb
from squeezedet.data.kitti_dataset import load_samples
from squeezedet.inference import KerasPredictor


@pytest.mark.slow
def test_tiny_model_overfits_real_images_and_predict_recovers_boxes(tiny_trained):
    assert tiny_trained.first_loss / tiny_trained.final_loss > 5
    cfg = tiny_trained.config
    predictor = KerasPredictor(cfg, tiny_trained.weights_path)
    samples = load_samples(tiny_trained.data_root, "train.txt", cfg.model.classes, cfg.data.class_map)
    found = total = 0
    for s in samples:
        dets = predictor.predict(read_image_rgb(s.image_path))
        ious = iou_matrix(s.boxes, dets.boxes) if len(dets) else np.zeros((len(s.boxes), 0))
        same_class = s.labels[:, None] == dets.labels[None, :]
        best = (ious * same_class).max(axis=1) if len(dets) else np.zeros(len(s.boxes))
        found += int((best > 0.5).sum())
        total += len(s.boxes)
    assert total >= 15
    assert found / total >= 0.9, f"recovered {found}/{total} boxes"
    metrics = json.loads((tiny_trained.output_dir / "train_metrics.json").read_text())
    assert metrics["summary"]["images_per_sec"] > 0
    assert (tiny_trained.output_dir / "training_curves.png").stat().st_size > 1000
    assert (tiny_trained.output_dir / "best.weights.h5").is_file()


@pytest.mark.slow
def test_resume_continues_from_last_epoch_with_validation(tmp_path):
    from squeezedet.config import load_config
    from squeezedet.train.trainer import train

    data = make_sample_subset(tmp_path / "data", ["000003", "000008"], val_ids=["000010"])
    d = tiny_config_dict(data)
    d["train"].update({"epochs": 1, "steps_per_epoch": 2, "val_every": 1})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(d))
    cfg = load_config(tmp_path / "c.yaml")
    first = train(cfg, tmp_path / "run", verbose=0)
    assert len(first.history) == 1 and "val_mAP_moderate_R40" in first.history[0]
    assert (tmp_path / "run" / "val_latest" / "metrics.json").is_file()
    resumed = train(cfg, tmp_path / "run", epochs=2, resume=True, verbose=0)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]
    assert resumed.epochs_run == 1 and math.isfinite(resumed.final_loss)


def test_nan_guard_stops_with_a_clear_message():
    from squeezedet.train.callbacks import NaNGuard, TrainingDiverged

    guard = NaNGuard()
    guard.on_epoch_begin(2)
    guard.on_train_batch_end(0, {"loss": 1.0})
    with pytest.raises(TrainingDiverged, match="epoch 3, batch 8"):
        guard.set_model(type("M", (), {"stop_training": False})())
        guard.on_train_batch_end(7, {"loss": float("nan")})


def test_warmup_cosine_schedule_values():
    from squeezedet.train.schedules import WarmupDecay

    s = WarmupDecay(0.01, warmup_steps=10, total_steps=110, decay="cosine")
    assert float(s(0)) == pytest.approx(0.001)
    assert float(s(9)) == pytest.approx(0.01)
    assert float(s(10)) == pytest.approx(0.01)
    assert float(s(60)) == pytest.approx(0.01 * (0.01 + 0.99 * 0.5), rel=1e-5)
    assert float(s(110)) == pytest.approx(0.0001, rel=1e-4)
    step = WarmupDecay(0.01, 0, 100, decay="step", decay_steps=30, decay_factor=0.5)
    assert float(step(65)) == pytest.approx(0.0025)


@pytest.mark.slow
def test_predict_cli_writes_kitti_results_and_annotated_media(tiny_trained, tmp_path):
    import cv2
    from conftest import DEMO_CLIP

    from squeezedet.cli import main
    from squeezedet.core.kitti import read_labels, read_results

    images = tiny_trained.data_root / "training" / "image_2"
    out = tmp_path / "pred"
    assert main(["predict", "--weights", str(tiny_trained.weights_path), "--config", str(tiny_trained.config_path),
                 "--source", str(images), "--output", str(out)]) == 0
    res = read_results(out / "results" / "000008.txt", missing_ok=False)
    labels = [o for o in read_labels(tiny_trained.data_root / "training/label_2/000008.txt") if o.type == "Car"]
    assert len(res) >= len(labels) - 1 and all(o.type in ("Car", "Pedestrian", "Cyclist") for o in res)
    assert cv2.imread(str(out / "annotated" / "000008.jpg")).shape == (375, 1242, 3)
    # a video: one result file per frame and an annotated clip with the source's size
    assert main(["predict", "--weights", str(tiny_trained.weights_path), "--source", str(DEMO_CLIP),
                 "--output", str(tmp_path / "vid")]) == 0  # config.yaml next to the weights
    assert len(list((tmp_path / "vid" / "results").glob("*.txt"))) == 38
    cap = cv2.VideoCapture(str(tmp_path / "vid" / "highway_dashcam_annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 38 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 1280
