"""Counting lines: direction, once per track, wobble, segment bounds, persistence across restarts and
the reset command over a real broker."""

import json
import time

import pytest
from pipeline_helpers import (  # noqa: F401 - fixtures
    RED,
    Collector,
    broker_fixture,
    edge_config,
    make_video,
    run_in_thread,
    state_tail,
    tiny_model_fixture,
    tiny_models_fixture,
)

from pipeline.config import EdgeConfig, LineConfig
from pipeline.daemon import Daemon
from pipeline.lines import CountStore, LineCounters
from pipeline.tracker import TrackedObject

SIZE = (200, 100)
ROAD = {"points": [[0, 50], [100, 50]], "in_direction": "down"}  # a horizontal segment, y = 50, x in 0..100


def at(tid, x, y, label="car", missed=0):
    return TrackedObject(tid, label, 0.9, 0.9, (x - 5, y - 20, x + 5, y), missed, 0, 0)


def feed(counter, path, tid=1, label="car"):
    """Move one track's bottom centre along ``path``; returns the crossings as (frame, direction)."""
    out = []
    for frame, (x, y) in enumerate(path):
        out += [(frame, c.direction) for c in counter.update([at(tid, x, y, label)], [], SIZE)]
    return out


def counter(**line):
    return LineCounters("cam", {"road": LineConfig(**{**ROAD, **line})})


def test_crossing_counts_once_in_the_right_direction():
    down = counter()
    assert feed(down, [(50, 30), (50, 40), (50, 60), (50, 70)]) == [(2, "in")]
    assert down.totals() == {"road": {"car": {"in": 1, "out": 0}}}
    up = counter()
    assert feed(up, [(50, 70), (50, 60), (50, 40)]) == [(2, "out")]
    flipped = counter(in_direction="up")
    assert feed(flipped, [(50, 70), (50, 60), (50, 40)]) == [(2, "in")]


def test_a_track_wobbling_on_the_line_counts_once():
    c = counter()
    path = [(50, 45), (50, 55), (50, 45), (50, 55), (50, 50), (50, 45), (50, 58)]
    assert feed(c, path) == [(1, "in")]
    assert c.totals()["road"]["car"] == {"in": 1, "out": 0}
    # another track crossing later counts too: once per track, not once per line
    assert feed(c, [(20, 40), (20, 60)], tid=2) == [(1, "in")]
    assert c.totals()["road"]["car"] == {"in": 2, "out": 0}


def test_touching_the_line_or_passing_beside_the_segment_does_not_count():
    c = counter()
    assert feed(c, [(50, 40), (50, 50), (50, 50), (50, 40)]) == []  # on the line and back: never across
    assert feed(c, [(150, 40), (150, 60)], tid=2) == []  # crosses y=50 at x=150, beyond the segment
    # ... and having passed beside it, coming back through the segment counts (upwards = out)
    # (150, 60) -> (30, 40) crosses y=50 at x=90, inside the segment
    assert feed(c, [(150, 60), (30, 40)], tid=2) == [(1, "out")]


def test_missed_frames_and_label_filter():
    c = counter(labels=["car"])
    assert feed(c, [(50, 40), (50, 60)], label="person") == []
    events = c.update([at(1, 50, 40)], [], SIZE) + c.update([at(1, 50, 60, missed=1)], [], SIZE)
    assert events == []  # a missed frame repeats the last box: no evidence of motion


def test_normalised_line_and_direction_validation():
    c = LineCounters("cam", {"road": LineConfig(points=[[0, 0.5], [0.5, 0.5]], in_direction="down")})
    assert feed(c, [(50, 40), (50, 60)]) == [(1, "in")]  # (0.5, 0.5) of 200x100 = (100, 50)
    with pytest.raises(ValueError, match="runs along the line"):
        LineConfig(points=[[0, 50], [100, 50]], in_direction="left")
    with pytest.raises(ValueError, match="must differ"):
        LineConfig(points=[[1, 1], [1, 1]])


def test_counts_persist_atomically_and_reset(tmp_path):
    path = tmp_path / "state" / "counts.json"
    store = CountStore(path)
    c = LineCounters("cam", {"road": LineConfig(**ROAD)}, store)
    feed(c, [(50, 40), (50, 60)])
    feed(c, [(50, 60), (50, 40)], tid=2)
    assert json.loads(path.read_text()) == {"version": 1, "cameras": {"cam": {"road": {"car": {"in": 1, "out": 1}}}}}
    assert [p.name for p in path.parent.iterdir()] == ["counts.json"]  # no temp file left behind
    # a restart: a new store from the same file carries on from the saved totals
    again = LineCounters("cam", {"road": LineConfig(**ROAD)}, CountStore(path))
    assert again.totals() == {"road": {"car": {"in": 1, "out": 1}}}
    feed(again, [(50, 40), (50, 60)], tid=9)
    assert again.totals()["road"]["car"] == {"in": 2, "out": 1}
    assert again.reset() == ["road"] and again.reset("nope") == []
    assert json.loads(path.read_text())["cameras"]["cam"]["road"]["car"] == {"in": 0, "out": 0}


def test_unreadable_state_file_starts_from_zero(tmp_path):
    path = tmp_path / "counts.json"
    path.write_text("{not json")
    assert CountStore(path).get("cam") == {}


# -- through the daemon, with a real broker --------------------------------------------------------
# The tiny model's car in model row r has its bottom centre at y = 57.6, 83.2, 108.8 frame px (r = 0, 1, 2).
LINE = {"points": [[0, 95], [256, 95]], "in_direction": "down", "coordinates": "pixels"}
DOWN = [1, 1, 1, 2, 2, 2]  # confirmed at frame 1 in row 1, crosses y=95 at frame 3


def line_config(tiny_model, video, port, state, **run):
    return EdgeConfig.model_validate(edge_config(
        tiny_model, video, port, run={"max_frames": None, "state_file": str(state), **run},
        camera={"name": "test_cam", "lines": {"road": LINE}}))


def finish(daemon):
    thread, result = run_in_thread(daemon)
    thread.join(30)
    assert result == [0]


def test_crossing_event_retained_totals_and_restart(broker, tmp_path, tiny_model):
    video = make_video(tmp_path / "down.avi", [[(row, 2, RED)] for row in DOWN])
    state = tmp_path / "counts.json"
    collector = Collector(broker.port, ["sd/#"])
    finish(Daemon(line_config(tiny_model, video, broker.port, state)))
    assert collector.wait_for(lambda: collector.last("sd/availability") == "offline")
    (cross,) = collector.json("sd/test_cam/lines/road/events")
    assert {k: cross[k] for k in ("type", "camera", "line", "direction", "frame", "id", "label", "totals")} == {
        "type": "cross", "camera": "test_cam", "line": "road", "direction": "in", "frame": 3, "id": 1,
        "label": "car", "totals": {"in": 1, "out": 0}}
    assert cross["object"]["box"][3] == pytest.approx(108.8, abs=0.05)
    totals = collector.payloads("sd/test_cam/lines/road/car/in")
    assert state_tail(totals, ["0", "1"]), totals  # state: the 0 is superseded if frame 3 beats the connect
    assert collector.last("sd/test_cam/lines/road/person/out") == "0"
    assert json.loads(state.read_text())["cameras"]["test_cam"]["road"]["car"] == {"in": 1, "out": 0}
    collector.close()

    # restart: the total starts at 1 and the same clip makes it 2
    collector = Collector(broker.port, ["sd/test_cam/lines/#"])
    finish(Daemon(line_config(tiny_model, video, broker.port, state)))
    assert collector.wait_for(lambda: collector.last("sd/test_cam/lines/road/car/in") == "2")
    assert [p.decode() for p, r in [(p, r) for t, p, r in collector.messages
                                    if t == "sd/test_cam/lines/road/car/in"]][-2:] == ["1", "2"]
    collector.close()


def test_reset_counts_command(broker, tmp_path, tiny_model):
    video = make_video(tmp_path / "down.avi", [[(row, 2, RED)] for row in DOWN + [2] * 4])
    state = tmp_path / "counts.json"
    state.write_text(json.dumps({"version": 1, "cameras": {"test_cam": {"road": {"car": {"in": 7, "out": 3}}}}}))
    collector = Collector(broker.port, ["sd/test_cam/lines/#"])
    daemon = Daemon(line_config(tiny_model, video, broker.port, state, stop_at_end=False))
    thread, result = run_in_thread(daemon)
    try:
        assert collector.wait_for(lambda: collector.last("sd/test_cam/lines/road/car/in") == "8", 20)
        assert daemon.cameras["test_cam"].counts()["lines"] == {"road": {"car": {"in": 8, "out": 3},
                                                                          "person": {"in": 0, "out": 0}}}
        collector.client.publish("sd/test_cam/command", json.dumps({"action": "reset_counts"}), qos=1)
        assert collector.wait_for(lambda: collector.last("sd/test_cam/lines/road/car/out") == "0", 20)
        assert collector.last("sd/test_cam/lines/road/car/in") == "0"
        deadline = time.monotonic() + 5
        while json.loads(state.read_text())["cameras"]["test_cam"]["road"]["car"]["in"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert json.loads(state.read_text())["cameras"]["test_cam"]["road"]["car"] == {"in": 0, "out": 0}
    finally:
        daemon.stop()
        thread.join(30)
        collector.close()
    assert result == [0]


def test_unreadable_state_file_is_kept_aside_not_overwritten(tmp_path, caplog):
    state = tmp_path / "counts.json"
    state.write_text('{"version": 1, "cameras": {"cam": {"road": {"car": {"in": 41')  # cut short
    store = CountStore(state)
    assert store.get("cam") == {}
    assert not state.exists() and (tmp_path / "counts.json.bad").read_text().endswith('"in": 41')
    store.put("cam", {"road": {"car": {"in": 1, "out": 0}}})
    assert json.loads(state.read_text())["cameras"]["cam"]["road"]["car"]["in"] == 1
    assert (tmp_path / "counts.json.bad").is_file()  # the evidence survives the next save
