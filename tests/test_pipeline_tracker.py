"""Tracker and score smoothing on scripted detection sequences (no model, no I/O)."""

import pytest

from pipeline.config import TrackerConfig
from pipeline.tracker import ScoreSmoother, Tracker


def box(x, y, w=40, h=40):
    return [x, y, x + w, y + h]


def feed(tracker, frames):
    """frames: list of [(box, score, label), ...]; returns the per-frame outputs."""
    outs = []
    for dets in frames:
        outs.append(tracker.update([d[0] for d in dets], [d[1] for d in dets], [d[2] for d in dets]))
    return outs


def events(outs):
    return [(i, e.type, e.after.track_id) for i, o in enumerate(outs) for e in o.events]


def test_one_frame_spurious_detection_never_reaches_consumers():
    tracker = Tracker(TrackerConfig(min_hits=2, max_missed=3, threshold=0.5))
    outs = feed(tracker, [[(box(10, 10), 0.99, "car")]] + [[]] * 6)
    assert events(outs) == []
    assert all(o.objects == [] for o in outs)


def test_confirmation_needs_min_hits_and_then_reports_every_frame():
    tracker = Tracker(TrackerConfig(min_hits=3, max_missed=3, threshold=0.5))
    outs = feed(tracker, [[(box(10, 10), 0.9, "car")]] * 5)
    assert [len(o.objects) for o in outs] == [0, 0, 1, 1, 1]
    assert events(outs) == [(2, "new", 1)]
    new = outs[2].events[0]
    assert new.before is None and new.after.label == "car" and new.after.first_frame == 0


def test_briefly_missing_object_keeps_its_id_and_does_not_flicker():
    tracker = Tracker(TrackerConfig(min_hits=2, max_missed=3))
    seen = [(box(50, 20), 0.9, "car")]
    # detected 3 frames, missed 2 (< max_missed), detected again
    outs = feed(tracker, [seen] * 3 + [[]] * 2 + [seen] * 2)
    ids = [[o.track_id for o in out.objects] for out in outs]
    assert ids == [[], [1], [1], [1], [1], [1], [1]]
    assert [o.objects[0].missed for o in outs[3:5]] == [1, 2]
    assert outs[3].objects[0].score == 0.0  # raw score of a missed frame
    assert [e[1] for e in events(outs) if e[1] != "update"] == ["new"]  # no end, no second new


def test_track_ends_after_max_missed_frames_with_before_and_after():
    tracker = Tracker(TrackerConfig(min_hits=2, max_missed=3))
    outs = feed(tracker, [[(box(50, 20), 0.9, "car")]] * 2 + [[]] * 3 + [[(box(50, 20), 0.9, "car")]] * 2)
    assert events(outs) == [(1, "new", 1), (4, "end", 1), (6, "new", 2)]
    end = outs[4].events[0]
    assert end.before.track_id == 1 and end.after.missed == 3 and end.after.last_frame == 1
    assert outs[4].objects == []
    # a re-appearing object is a new track and must be confirmed again
    assert outs[5].objects == [] and [o.track_id for o in outs[6].objects] == [2]


def test_crossing_objects_keep_their_ids():
    # Two 40x40 cars on the same row, 16 px/frame towards each other. At the crossing, matching on
    # IoU with the last boxes alone would swap them (each new box sits exactly on the other car's last
    # box); the tracker predicts with each track's velocity and keeps them apart.
    tracker = Tracker(TrackerConfig(min_hits=2, max_missed=3))
    frames = [[(box(16 * i, 100), 0.9, "car"), (box(208 - 16 * i, 100), 0.9, "car")] for i in range(14)]
    outs = feed(tracker, frames)
    start = {o.track_id: o.box[0] for o in outs[1].objects}
    a_id = min(start, key=start.get)  # the car that starts on the left
    for i, out in enumerate(outs[1:], start=1):
        by_id = {o.track_id: o.box[0] for o in out.objects}
        assert set(by_id) == {1, 2}, i
        assert by_id[a_id] == pytest.approx(16 * i), f"frame {i}: ids swapped"
    assert [e[1] for e in events(outs)].count("new") == 2


def test_association_is_class_aware():
    tracker = Tracker(TrackerConfig(min_hits=1, max_missed=2))
    outs = feed(tracker, [[(box(10, 10), 0.9, "car")], [(box(10, 10), 0.9, "person")]])
    assert [(o.track_id, o.label) for o in outs[1].objects] == [(1, "car"), (2, "person")]
    assert outs[1].objects[0].missed == 1


def test_ema_matches_hand_computed_values():
    s = ScoreSmoother("ema", alpha=0.5, window=5)
    # starts at the first score, then 0.5*x + 0.5*previous; a miss counts as 0
    assert [s.push(x) for x in (0.8, 0.6, 0.0, 1.0)] == pytest.approx([0.8, 0.7, 0.35, 0.675])
    s = ScoreSmoother("ema", alpha=0.25, window=5)
    assert [s.push(x) for x in (0.4, 0.8, 0.8)] == pytest.approx([0.4, 0.5, 0.575])


def test_median_matches_hand_computed_values():
    s = ScoreSmoother("median", alpha=0.5, window=3)
    assert [s.push(x) for x in (0.9, 0.2, 0.7, 0.0, 0.0)] == pytest.approx([0.9, 0.55, 0.7, 0.2, 0.0])


def test_tracker_reports_raw_and_smoothed_scores():
    tracker = Tracker(TrackerConfig(smoothing="median", median_window=3, min_hits=2, max_missed=3, threshold=0.5))
    outs = feed(tracker, [[(box(0, 0), s, "car")] for s in (0.9, 0.6, 0.95)] + [[]])
    assert [o.objects[0].score for o in outs[1:]] == pytest.approx([0.6, 0.95, 0.0])
    assert [o.objects[0].smoothed_score for o in outs[1:]] == pytest.approx([0.75, 0.9, 0.6])


def test_low_scores_never_confirm_and_hysteresis_keeps_confirmed_tracks():
    cfg = TrackerConfig(min_hits=2, max_missed=3, threshold=0.5, ema_alpha=0.5)
    tracker = Tracker(cfg)
    outs = feed(tracker, [[(box(0, 0), 0.3, "car")]] * 5)
    assert events(outs) == []
    tracker = Tracker(cfg)
    # confirmed at 0.9, then the detector's score sags to 0.2: still reported, not ended
    outs = feed(tracker, [[(box(0, 0), 0.9, "car")]] * 2 + [[(box(0, 0), 0.2, "car")]] * 4)
    assert [len(o.objects) for o in outs] == [0, 1, 1, 1, 1, 1]
    assert "end" not in [e[1] for e in events(outs)]


def test_update_events_on_movement_carry_before_and_after():
    tracker = Tracker(TrackerConfig(min_hits=2, max_missed=3, update_iou=0.7))
    frames = [[(box(0, 0), 0.9, "car")]] * 2 + [[(box(20, 0), 0.9, "car")]]
    outs = feed(tracker, frames)
    assert [e[1] for e in events(outs)] == ["new", "update"]
    update = outs[2].events[0]
    assert update.before.box == (0, 0, 40, 40) and update.after.box == (20, 0, 60, 40)


def test_flush_ends_confirmed_tracks_only():
    tracker = Tracker(TrackerConfig(min_hits=2, max_missed=3))
    feed(tracker, [[(box(0, 0), 0.9, "car")]] * 2 + [[(box(0, 0), 0.9, "car"), (box(100, 0), 0.9, "car")]])
    ended = tracker.flush()
    assert [(e.type, e.after.track_id) for e in ended] == [("end", 1)]
