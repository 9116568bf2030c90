"""Several cameras on one detector: one model load, every camera's topics, fair round-robin inference,
and a lost stream on one camera never stalls the others."""

import shutil
import threading
import time

import pytest
from pipeline_helpers import (  # noqa: F401 - fixtures
    GREEN,
    RED,
    Collector,
    broker_fixture,
    car_video_fixture,
    cell_rect_frame,
    edge_config,
    make_video,
    run_in_thread,
    tiny_model_fixture,
    tiny_models_fixture,
    write_config,
)

from pipeline.config import EdgeConfig
from pipeline.daemon import Daemon
from pipeline.detector import Detector
from pipeline.scheduler import SharedDetector
from pipeline.sources import SourceError
from squeezedet.errors import ConfigError


def two_camera_config(tiny_model, front_uri, back_uri, port, **run):
    base = edge_config(tiny_model, front_uri, port, run=run)
    del base["camera"], base["source"]
    src = {"reconnect_initial_s": 0.1, "reconnect_max_s": 0.3}
    base["cameras"] = {
        "front": {"source": {"uri": str(front_uri), **src}},
        "back": {"source": {"uri": str(back_uri), "loop": True, "max_fps": 40, **src}, "tracker": {"min_hits": 3}},
    }
    return base


@pytest.fixture
def load_counter(monkeypatch):
    """Counts Detector constructions (the real model is still loaded each time)."""
    loads = []
    real_init = Detector.__init__

    def counting_init(self, *args, **kwargs):
        loads.append(args[0] if args else kwargs.get("model_path"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Detector, "__init__", counting_init)
    return loads


def test_two_cameras_one_model_load_both_cameras_publish(broker, tmp_path, tiny_model, car_video, load_counter):
    person = make_video(tmp_path / "person.avi", [[(2, 5, GREEN)]] * 7)
    looped = shutil.copy(person, tmp_path / "person_copy.avi")  # the second camera loops a copy
    collector = Collector(broker.port, ["sd/#"])
    cfg = EdgeConfig.model_validate(two_camera_config(tiny_model, car_video, looped, broker.port, max_frames=15))
    assert list(cfg.cameras) == ["front", "back"] and cfg.cameras["back"].tracker.min_hits == 3
    assert cfg.cameras["front"].tracker.min_hits == 2  # the top-level tracker is every camera's default
    daemon = Daemon(cfg)
    thread, result = run_in_thread(daemon)
    thread.join(30)
    assert result == [0]
    assert len(load_counter) == 1  # one model for both cameras
    assert daemon.cameras["front"].shared is daemon.cameras["back"].shared
    assert daemon.shared.served == {"front": 15, "back": 15}
    assert collector.wait_for(lambda: collector.last("sd/availability") == "offline")

    front = collector.json("sd/front/detections")
    back = collector.json("sd/back/detections")
    assert [d["frame"] for d in front] == list(range(15))
    assert [d["frame"] for d in back] == list(range(15))  # 7-frame clip looped: indices keep counting
    assert {o["label"] for d in front for o in d["objects"]} == {"car"}
    assert {o["label"] for d in back for o in d["objects"]} == {"person"}
    assert [d["objects"] != [] for d in back][:3] == [False, False, True]  # its own min_hits=3
    assert [(e["type"], e["frame"]) for e in collector.json("sd/front/events")] == [("new", 1), ("end", 14)]
    assert [(e["type"], e["frame"]) for e in collector.json("sd/back/events")] == [("new", 2), ("end", 14)]
    assert collector.last("sd/front/car/count") == "0" and "1" in [p.decode() for p in collector.payloads("sd/back/person/count")]
    for cam in ("front", "back"):
        assert collector.json(f"sd/{cam}/status")[-1]["state"] == "offline"
        assert collector.json(f"sd/{cam}/stats"), f"no stats for {cam}"
    daemon_stats = collector.json("sd/stats")[-1]
    assert set(daemon_stats["cameras"]) == {"front", "back"}
    assert daemon.stats()["frames"] == 30 and daemon.frames == 30


class DeadStream:
    """An RTSP camera that delivers 3 frames, then is gone for good (every reopen fails)."""

    def __init__(self):
        self.opens = 0
        self.image = cell_rect_frame([(1, 2, RED)])[:, :, ::-1].copy()

    def __call__(self, cfg):
        self.opens += 1
        if self.opens > 1:
            raise SourceError(f"{cfg.uri}: cannot open stream")
        return self

    def read(self):
        if self.opens > 1 or getattr(self, "n", 0) >= 3:
            return False, None
        self.n = getattr(self, "n", 0) + 1
        time.sleep(0.02)
        return True, self.image

    def get(self, prop):
        return 0.0

    def release(self):
        pass


def test_a_lost_stream_keeps_reconnecting_while_the_other_camera_publishes(broker, tmp_path, tiny_model, car_video):
    collector = Collector(broker.port, ["sd/#"])
    cfg = EdgeConfig.model_validate(two_camera_config(tiny_model, "rtsp://cam.local/front", car_video, broker.port,
                                                      max_frames=None))
    dead = DeadStream()
    daemon = Daemon(cfg, opener={"front": dead})
    thread, result = run_in_thread(daemon)
    try:
        assert collector.wait_for(lambda: dead.opens >= 4, 20)  # still trying
        n = len(collector.payloads("sd/back/detections"))
        assert collector.wait_for(lambda: len(collector.payloads("sd/back/detections")) >= n + 20, 20)
        assert daemon.cameras["front"].frames == 3
        status = collector.json("sd/front/status")[-1]
        assert status["state"] == "reconnecting" and "cannot open stream; attempt" in status["detail"]
        assert collector.last("sd/front/availability") == "offline"
        assert collector.last("sd/back/availability") == "online"
        assert daemon.cameras["front"].stats()["source_state"] == "reconnecting"
    finally:
        daemon.stop()
        thread.join(30)
        collector.close()
    assert result == [0]


def test_scheduler_is_fair_round_robin(tiny_model):
    """Three cameras asking as fast as they can: a waiting frame is served after at most one inference
    of each other camera (never two of the same), so no camera can starve another."""
    shared = SharedDetector(Detector(tiny_model, num_threads=1), ["a", "b", "c"])
    shared.start()
    image = cell_rect_frame([(1, 2, RED)])
    behind = {name: [] for name in "abc"}
    stop = threading.Event()

    def camera(name):
        while not stop.is_set():
            behind[name].append(shared.detect(name, image).behind)

    threads = [threading.Thread(target=camera, args=(n,)) for n in "abc"]
    for t in threads:
        t.start()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(5)
    shared.stop()
    assert min(shared.served.values()) > 20, shared.served
    assert max(max(b) for b in behind.values()) <= 2, {n: max(b) for n, b in behind.items()}
    assert sum(shared.served.values()) == shared.total


def test_a_bad_frame_fails_that_request_only(tiny_model):
    shared = SharedDetector(Detector(tiny_model, num_threads=1), ["a"])
    shared.start()
    try:
        with pytest.raises(Exception):  # noqa: B017 - whatever the model says about a 1-D array
            shared.detect("a", b"not an image")
        assert len(shared.detect("a", cell_rect_frame([(1, 2, RED)])).detections.boxes) == 1
    finally:
        shared.stop()


def test_cameras_config_errors(tmp_path, tiny_model, car_video):
    from pipeline.config import load_edge_config

    cfg = two_camera_config(tiny_model, car_video, car_video, None)
    cfg["cameras"]["back"]["name"] = "other"
    with pytest.raises(ConfigError, match="cameras.back.name: must equal its key"):
        load_edge_config(write_config(tmp_path / "a.yaml", cfg), env={})
    cfg = two_camera_config(tiny_model, car_video, car_video, None)
    cfg["source"] = {"uri": str(car_video)}
    with pytest.raises(ConfigError, match="cameras: give either cameras or camera/source, not both"):
        load_edge_config(write_config(tmp_path / "b.yaml", cfg), env={})
    cfg = two_camera_config(tiny_model, car_video, "rtsp://u:${PW}@cam/x", None)
    with pytest.raises(ConfigError, match="cameras.back.source.uri: environment variable PW is not set"):
        load_edge_config(write_config(tmp_path / "c.yaml", cfg), env={})
    assert load_edge_config(tmp_path / "c.yaml", env={"PW": "s"}).cameras["back"].source.uri == "rtsp://u:s@cam/x"
    cfg = two_camera_config(tiny_model, car_video, car_video, None)
    cfg["cameras"]["front"]["zones"] = {"bad name": {"points": [[0, 0], [1, 0], [1, 1]]}}
    with pytest.raises(ConfigError, match="cameras.front.zones.bad name: a name may use"):
        load_edge_config(write_config(tmp_path / "d.yaml", cfg), env={})


def test_model_reload_swaps_the_model_for_every_camera(broker, tmp_path, tiny_models, tiny_model, car_video):
    import json

    from pipeline_helpers import install_model

    copy = shutil.copy(car_video, tmp_path / "car_copy.avi")
    raw = two_camera_config(tiny_model, car_video, copy, broker.port, max_frames=None)
    raw["cameras"]["front"]["source"].update(loop=True, max_fps=25)
    collector = Collector(broker.port, ["sd/+/detections", "sd/+/status"])
    daemon = Daemon(EdgeConfig.model_validate(raw))
    thread, result = run_in_thread(daemon)

    def model_ids(cam):
        return [d["model_id"] for d in collector.json(f"sd/{cam}/detections")]

    try:
        assert collector.wait_for(lambda: len(model_ids("front")) >= 3 and len(model_ids("back")) >= 3, 20)
        install_model(tiny_models["tiny_b"], tiny_model)
        collector.client.publish("sd/command", json.dumps({"action": "reload_model"}), qos=1)
        for cam in ("front", "back"):
            assert collector.wait_for(lambda c=cam: model_ids(c)[-1] == "tiny_b", 20), cam
            assert collector.wait_for(lambda c=cam: collector.json(f"sd/{c}/status")[-1]["model_id"] == "tiny_b")
        n = len(model_ids("back"))
        assert collector.wait_for(lambda: len(model_ids("back")) >= n + 3)
        assert set(model_ids("back")[n:]) == {"tiny_b"} and daemon.stats()["model_id"] == "tiny_b"
    finally:
        daemon.stop()
        thread.join(30)
        collector.close()
    assert result == [0]


def test_per_camera_annotated_videos_and_heartbeat(tmp_path, tiny_model, car_video):
    import json
    import os

    import cv2

    from pipeline.daemon import healthcheck

    raw = two_camera_config(tiny_model, car_video, car_video, None, max_frames=5,
                            output_video=str(tmp_path / "out.avi"), health_file=str(tmp_path / "health.json"))
    cfg = EdgeConfig.model_validate(raw)
    thread, result = run_in_thread(Daemon(cfg))
    thread.join(30)
    assert result == [0]
    for cam in ("front", "back"):
        cap = cv2.VideoCapture(str(tmp_path / f"out-{cam}.avi"))
        n = 0
        while cap.read()[0]:
            n += 1
        assert n == 5, cam
    beat = json.loads((tmp_path / "health.json").read_text())
    assert set(beat["cameras"]) == {"front", "back"} and all(abs(t - time.time()) < 30 for t in beat["cameras"].values())
    ok, message = healthcheck(cfg, "edge.yaml")
    assert ok and message.endswith("s ago")
    beat["cameras"]["back"] = time.time() - 600  # one camera silent for 10 minutes, the file itself fresh
    (tmp_path / "health.json").write_text(json.dumps(beat))
    ok, message = healthcheck(cfg, "edge.yaml")
    assert ok and message.endswith("; no recent frame from back")
    old = time.time() - 120
    os.utime(tmp_path / "health.json", (old, old))
    assert healthcheck(cfg, "edge.yaml")[0] is False


@pytest.mark.parametrize("camera, expected", [
    ({}, "cameras.cam.source: Field required"),
    ({"source": {"uri": "x.mp4"}, "lines": {"l": {"points": [[0, 0], [1, 0]], "in_direction": "left"}}},
     "cameras.cam.lines.l.in_direction: left runs along the line, not across it"),
    ({"source": {"uri": "x.mp4"}, "filters": {"car": {"min_area": 5, "max_area": 1}}},
     "cameras.cam.filters.car.max_area: must be >= min_area"),
    ({"source": {"uri": "x.mp4"}, "zones": {"z": {"points": [[0, 0], [1, 1]]}}},
     "cameras.cam.zones.z.points: List should have at least 3 items"),
    ({"source": {"uri": "x.mp4"}, "masks": [{"points": [[0, 0], [1, 0], [1, 1]], "colour": 1}]},
     "cameras.cam.masks.0.colour: unknown key"),
])
def test_camera_config_errors_name_the_dotted_key(tmp_path, camera, expected):
    from pipeline.config import load_edge_config

    path = write_config(tmp_path / "edge.yaml", {"model": {"path": "m.tflite"}, "cameras": {"cam": camera}})
    with pytest.raises(ConfigError) as err:
        load_edge_config(path, env={})
    assert str(err.value).startswith(f"{path}: {expected}")
