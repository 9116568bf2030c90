"""Zones (inertia, enter/leave, per-label counts), masks and object filters, on scripted tracks and
through the daemon with the tiny model."""

import numpy as np
import pytest
from pipeline_helpers import (  # noqa: F401 - fixtures
    CELL,
    GREEN,
    RED,
    car_video_fixture,
    edge_config,
    make_video,
    run_in_thread,
    tiny_model_fixture,
    tiny_models_fixture,
)

from pipeline.config import EdgeConfig, MaskConfig, ObjectFilter, ZoneConfig
from pipeline.daemon import Daemon
from pipeline.filters import ObjectFilters
from pipeline.tracker import TrackedObject
from pipeline.zones import Masks, Zones, bottom_centre

SIZE = (200, 100)
SQUARE = [[0, 0], [100, 0], [100, 100], [0, 100]]  # pixels: the left half of a 200x100 frame


def obj(tid, foot_x, label="car", missed=0, foot_y=50.0):
    """A track whose box's bottom centre is (foot_x, foot_y)."""
    return TrackedObject(tid, label, 0.9, 0.9, (foot_x - 10, foot_y - 30, foot_x + 10, foot_y), missed, 0, 0)


def run(zones, xs_per_frame, label="car"):
    """Feed one track (id 1) through frames at the given bottom-centre x; returns [(frame, type)]."""
    out = []
    for frame, x in enumerate(xs_per_frame):
        for ev in zones.update([obj(1, x, label)], [], SIZE):
            out.append((frame, ev.type, ev.count))
    return out


def test_bottom_centre_is_where_the_box_touches_the_ground():
    assert bottom_centre((10, 20, 30, 80)) == (20.0, 80.0)


def test_one_frame_touch_never_counts_and_entry_needs_min_frames():
    zones = Zones({"drive": ZoneConfig(points=SQUARE, min_frames=3)})
    # outside, one frame in, out, then three frames in: enter on the third frame inside (frame 6)
    assert run(zones, [150, 50, 150, 150, 50, 50, 50]) == [(6, "enter", 1)]
    assert zones.counts() == {"drive": {"car": 1}}
    # two frames out do not leave; the third does (inertia both ways)
    zones2 = Zones({"drive": ZoneConfig(points=SQUARE, min_frames=3)})
    assert run(zones2, [50, 50, 50, 150, 150, 50, 150, 150, 150]) == [(2, "enter", 1), (8, "leave", 0)]
    assert zones2.counts() == {"drive": {}}


def test_missed_frames_carry_no_position_and_an_ended_track_leaves():
    zones = Zones({"drive": ZoneConfig(points=SQUARE, min_frames=2)})
    assert [e.type for e in zones.update([obj(1, 50)], [], SIZE)] == []
    assert [e.type for e in zones.update([obj(1, 150, missed=1)], [], SIZE)] == []  # missed: ignored
    assert [(e.type, e.count) for e in zones.update([obj(1, 50)], [], SIZE)] == [("enter", 1)]
    assert zones.membership(1) == ["drive"]
    gone = obj(1, 50, missed=3)
    assert [(e.type, e.obj.track_id, e.count) for e in zones.update([], [gone], SIZE)] == [("leave", 1, 0)]


def test_counts_per_label_and_label_restricted_zone():
    zones = Zones({"drive": ZoneConfig(points=SQUARE, min_frames=1),
                   "walk": ZoneConfig(points=SQUARE, min_frames=1, labels=["person"])})
    objs = [obj(1, 10), obj(2, 60), obj(3, 40, "person"), obj(4, 190, "person")]
    events = zones.update(objs, [], SIZE)
    assert sorted((e.zone, e.obj.track_id) for e in events) == [("drive", 1), ("drive", 2), ("drive", 3), ("walk", 3)]
    assert zones.counts() == {"drive": {"car": 2, "person": 1}, "walk": {"person": 1}}


def test_normalised_coordinates_scale_with_the_frame():
    zone = ZoneConfig(points=[[0, 0], [0.5, 0], [0.5, 1], [0, 1]], min_frames=1)  # auto: all <= 1
    assert zone.is_normalized(zone.points)
    zones = Zones({"half": zone})
    assert [e.type for e in zones.update([obj(1, 99)], [], SIZE)] == ["enter"]  # 0.5 * 200 = 100
    zones = Zones({"half": zone})
    assert zones.update([obj(1, 101)], [], SIZE) == []
    assert Zones({"half": zone}).geometry((400, 300)) == {"half": [[0, 0], [200, 0], [200, 300], [0, 300]]}
    pixels = ZoneConfig(points=[[0, 0], [1, 0], [1, 1]], coordinates="pixels")
    assert not pixels.is_normalized(pixels.points)


def test_masks_drop_by_bottom_centre_and_label():
    masks = Masks([MaskConfig(points=SQUARE), MaskConfig(points=[[100, 0], [200, 0], [200, 100], [100, 100]],
                                                         labels=["person"])])
    boxes = np.array([[40, 0, 60, 50],     # foot (50, 50): first mask -> dropped
                      [90, 0, 130, 50],    # foot (110, 50): second mask, but a car -> kept
                      [90, 0, 130, 50],    # the same box as a person -> dropped
                      [40, 0, 60, 150]])   # foot (50, 150): below the masks -> kept
    assert masks.keep(boxes, ["car", "car", "person", "car"], SIZE).tolist() == [False, True, False, True]


def test_object_filters_area_ratio_score():
    filters = ObjectFilters({
        "person": ObjectFilter(min_area=400, max_area=5000, max_ratio=1.0),
        "*": ObjectFilter(min_score=0.6),
    })
    boxes = np.array([
        [0, 0, 20, 40],    # person 20x40: area 800, ratio 0.5 -> kept
        [0, 0, 10, 30],    # person 10x30: area 300 < 400 -> dropped
        [0, 0, 100, 100],  # person area 10000 > 5000 -> dropped
        [0, 0, 40, 20],    # person ratio 2.0 > 1.0 -> dropped
        [0, 0, 40, 20],    # car, score 0.5 < 0.6 ("*") -> dropped
        [0, 0, 40, 20],    # car, score 0.7 -> kept
    ], dtype=float)
    scores = np.array([0.3, 0.9, 0.9, 0.9, 0.5, 0.7])  # the person filter has no min_score: 0.3 passes
    labels = ["person"] * 4 + ["car"] * 2
    assert filters.keep(boxes, scores, labels).tolist() == [True, False, False, False, False, True]


def test_bad_zone_and_line_configs_are_rejected():
    with pytest.raises(ValueError, match="min_length|at least 3"):
        ZoneConfig(points=[[0, 0], [1, 1]])
    with pytest.raises(ValueError, match="max_area: must be >= min_area"):
        ObjectFilter(min_area=10, max_area=5)


# -- through the daemon --------------------------------------------------------------------------
def moving_car_video(tmp_path, rows, name="moving.avi"):
    """A red car in column 2, in the given model row per frame."""
    return make_video(tmp_path / name, [[(row, 2, RED)] for row in rows])


def run_daemon(cfg_dict):
    daemon = Daemon(EdgeConfig.model_validate(cfg_dict))
    thread, result = run_in_thread(daemon)
    thread.join(30)
    assert result == [0]
    return daemon


def test_zone_enter_and_leave_through_the_daemon(tmp_path, tiny_model):
    # bottom centres (frame px) by model row: 1 -> 83.2, 2 -> 108.8; the zone is y >= 95
    video = moving_car_video(tmp_path, [1, 1, 1, 2, 1, 2, 2, 2, 2, 1, 1, 1, 1])
    daemon = run_daemon(edge_config(
        tiny_model, video, None, run={"max_frames": None}, tracker={"iou_threshold": 0.1},
        camera={"name": "test_cam", "zones": {"lower": {"points": [[0, 95], [256, 95], [256, 128], [0, 128]],
                                                         "min_frames": 3, "coordinates": "pixels"}}}))
    cam = daemon.cameras["test_cam"]
    zone_events = [(e["type"], e["frame"], e["id"], e["count"]) for e in cam.recent_events() if "zone" in e]
    # frame 3 alone touches the zone (no enter); 5, 6, 7 inside -> enter at 7; 9, 10, 11 outside -> leave at 11
    assert zone_events == [("enter", 7, 1, 1), ("leave", 11, 1, 0)]
    assert cam.counts()["zones"] == {"lower": {}}


def test_mask_and_filter_drop_detections_before_tracking(tmp_path, tiny_model):
    video = make_video(tmp_path / "two.avi", [[(1, 2, RED), (1, 6, GREEN)]] * 6)
    # the car's foot is at x=85.3, y=83.2; a mask around it. The person (x=199.1) is 64x64 px = area 4096:
    # a max_area filter of 4000 drops it.
    daemon = run_daemon(edge_config(
        tiny_model, video, None, run={"max_frames": 6},
        camera={"name": "test_cam", "masks": [{"points": [[60, 70], [110, 70], [110, 100], [60, 100]]}],
                "filters": {"person": {"max_area": 4000}}}))
    cam = daemon.cameras["test_cam"]
    assert cam.recent_events() == []  # nothing was ever confirmed
    assert (cam.masked, cam.filtered) == (6, 6)
    assert cam.stats()["masked"] == 6 and cam.stats()["filtered"] == 6
    assert CELL == 32
