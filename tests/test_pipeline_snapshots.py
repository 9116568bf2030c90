"""Snapshots: JPEG of the configured size showing the box, when tracks are confirmed and when their
score improves (rate-limited), retained on P/C/<label>/snapshot and referenced from the new event."""

import cv2
import numpy as np
import pytest
from pipeline_helpers import (  # noqa: F401 - fixtures
    RED,
    Collector,
    broker_fixture,
    car_video_fixture,
    cell_rect_frame,
    edge_config,
    expected_box,
    run_in_thread,
    tiny_model_fixture,
    tiny_models_fixture,
)

from pipeline.config import EdgeConfig, SnapshotConfig
from pipeline.daemon import Daemon
from pipeline.snapshots import Snapshotter, output_size, render
from pipeline.tracker import TrackedObject
from squeezedet.core.annotate import label_colour

FRAME = np.full((120, 200, 3), 40, np.uint8)  # dark grey RGB, 200x120


def car(tid=1, score=0.8, box=(50.0, 30.0, 110.0, 90.0)):
    return TrackedObject(tid, "car", score, score, box, 0, 0, 0)


def decode(jpeg: bytes) -> np.ndarray:
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"  # SOI ... EOI
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def test_output_size_rules():
    assert output_size(200, 120, None, 60) == (100, 60)
    assert output_size(200, 120, 50, None) == (50, 30)
    assert output_size(200, 120, 64, 64) == (64, 64)
    assert output_size(200, 120, None, None) == (200, 120)


def test_full_frame_snapshot_shows_the_box_in_the_label_colour():
    jpeg, w, h = render(FRAME, car(), SnapshotConfig(enabled=True, height=None, quality=95))
    img = decode(jpeg)
    assert img.shape == (120, 200, 3) and (w, h) == (200, 120)
    colour = np.array(label_colour("car"))
    # the box's bottom edge (y=90, x 60..100) and right edge (x=110, y 40..80) are drawn in the label colour
    for y, x in [(90, 80), (90, 60), (60, 110), (75, 110)]:
        assert np.abs(img[y, x].astype(int) - colour).max() < 40, (y, x, img[y, x])
    assert np.abs(img[60, 80].astype(int) - 40).max() < 10  # inside the box: the frame, untouched
    assert np.abs(img[10, 180].astype(int) - 40).max() < 10


def test_crop_snapshot_size_and_scaling():
    cfg = SnapshotConfig(enabled=True, crop=True, crop_margin=0.5, height=None, width=None)
    # box 60x60 at (50, 30); margin 30 each side -> x 20..140, y 0..120 (clipped at 0 and 120)
    img = decode(render(FRAME, car(), cfg)[0])
    assert img.shape == (120, 120, 3)
    img = decode(render(FRAME, car(), cfg.model_copy(update={"height": 48}))[0])
    assert img.shape == (48, 48, 3)
    img = decode(render(FRAME, car(), SnapshotConfig(enabled=True, width=64, height=32))[0])
    assert img.shape == (32, 64, 3)


def test_snapshot_on_confirmation_and_on_better_score_rate_limited(tmp_path):
    cfg = SnapshotConfig(enabled=True, min_score_gain=0.05, min_interval_s=0, save_dir=str(tmp_path / "shots"),
                         height=60)
    snap = Snapshotter(cfg, "front")
    first = snap.update(FRAME, [car(score=0.70)], {1}, set(), 1.7e9)
    assert [(s.track_id, s.score, s.width, s.height) for s in first] == [(1, 0.70, 100, 60)]
    assert snap.update(FRAME, [car(score=0.74)], set(), set(), 1.7e9) == []  # +0.04 < 0.05
    assert [s.score for s in snap.update(FRAME, [car(score=0.80)], set(), set(), 1.7e9 + 1)] == [0.80]
    files = sorted(p.name for p in (tmp_path / "shots" / "front").iterdir())
    assert len(files) == 2 and all(f.startswith("front-car-1-") and f.endswith(".jpg") for f in files)
    limited = Snapshotter(cfg.model_copy(update={"min_interval_s": 3600, "save_dir": None}), "front")
    limited.update(FRAME, [car(score=0.5)], {1}, set(), 0)
    assert limited.update(FRAME, [car(score=0.99)], set(), set(), 0) == []  # better, but too soon
    assert limited.update(FRAME, [car(tid=2, score=0.5)], {2}, set(), 0) != []  # another track: at once
    off = Snapshotter(SnapshotConfig(), "front")
    assert off.update(FRAME, [car()], {1}, set(), 0) == []


def test_saved_snapshots_are_kept_under_the_size_cap(tmp_path):
    folder = tmp_path / "shots"
    size = len(render(FRAME, car(), SnapshotConfig(enabled=True))[0])
    cap_mb = 3.5 * size / 1024 / 1024  # room for three
    other = Snapshotter(SnapshotConfig(enabled=True, save_dir=str(folder), max_dir_mb=cap_mb), "front-door")
    other.update(FRAME, [car(tid=1)], {1}, set(), 1.7e9)  # a camera whose name starts like the other's
    snap = Snapshotter(SnapshotConfig(enabled=True, save_dir=str(folder), max_dir_mb=cap_mb), "front")
    for tid in range(1, 7):
        snap.update(FRAME, [car(tid=tid)], {tid}, set(), 1.7e9 + tid)
    names = sorted(p.name for p in (folder / "front").iterdir())
    assert len(names) == 3 and [n.split("-")[2] for n in names] == ["4", "5", "6"]  # the oldest went
    assert [p.name.startswith("front-door-car-1-") for p in (folder / "front-door").iterdir()] == [True]


def test_daemon_publishes_a_retained_jpeg_referenced_from_the_new_event(broker, tiny_model, car_video):
    collector = Collector(broker.port, ["sd/#"])
    cfg = EdgeConfig.model_validate(edge_config(
        tiny_model, car_video, broker.port, run={"max_frames": 6},
        camera={"name": "test_cam", "snapshots": {"enabled": True, "width": 128, "height": 64, "quality": 90}}))
    thread, result = run_in_thread(Daemon(cfg))
    thread.join(30)
    assert result == [0]
    assert collector.wait_for(lambda: collector.last("sd/availability") == "offline")
    new = [e for e in collector.json("sd/test_cam/events") if e["type"] == "new"][0]
    assert new["snapshot"] == {"topic": "sd/test_cam/car/snapshot", "width": 128, "height": 64,
                               "bytes": len(collector.payloads("sd/test_cam/car/snapshot")[0]), "file": None}
    collector.close()
    late = Collector(broker.port, ["sd/test_cam/car/snapshot"])  # retained: a late subscriber gets it
    assert late.wait_for(lambda: late.payloads("sd/test_cam/car/snapshot"))
    img = decode(late.payloads("sd/test_cam/car/snapshot")[0])
    assert img.shape == (64, 128, 3)  # the 256x128 frame at half size
    x1, y1, x2, y2 = (v / 2 for v in expected_box(1, 2))  # the box, scaled with the frame
    colour = np.array(label_colour("car"))
    edge = img[int(round(y2)) - 1:int(round(y2)) + 1, int(x1) + 6:int(x2) - 6].reshape(-1, 3).astype(int)
    assert np.abs(edge - colour).max(axis=1).min() < 60  # the bottom edge of the box is drawn
    late.close()
    assert cfg.cameras["test_cam"].snapshots.quality == 90
    assert pytest.approx(x2 - x1, abs=1) == 32
