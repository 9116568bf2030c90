"""Test helpers for the daemon's HTTP server: plain urllib requests and an MJPEG stream reader."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Reply:
    status: int
    content_type: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def get(port: int, path: str, headers: dict | None = None, timeout: float = 10.0) -> Reply:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Reply(r.status, r.headers.get("Content-Type", ""), dict(r.headers), r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.headers.get("Content-Type", ""), dict(e.headers), e.read())


def read_mjpeg(port: int, path: str, parts: int, headers: dict | None = None,
               timeout: float = 20.0) -> tuple[str, list[tuple[dict, bytes]], float]:
    """Read ``parts`` JPEG parts of a multipart/x-mixed-replace stream: (content type, [(part headers,
    jpeg bytes)], seconds taken from the first part to the last)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    out: list[tuple[dict, bytes]] = []
    deadline = time.monotonic() + timeout
    first = None
    with urllib.request.urlopen(req, timeout=timeout) as r:
        ctype = r.headers.get("Content-Type", "")
        boundary = ("--" + ctype.split("boundary=", 1)[1]).encode()
        assert r.readline().rstrip(b"\r\n") == boundary
        while len(out) < parts and time.monotonic() < deadline:
            head = {}
            while (line := r.readline().rstrip(b"\r\n")):
                key, _, value = line.decode().partition(":")
                head[key.strip().lower()] = value.strip()
            data = r.read(int(head["content-length"]))
            assert r.readline() == b"\r\n" and r.readline().rstrip(b"\r\n") == boundary
            first = first or time.monotonic()
            out.append((head, data))
    return ctype, out, (time.monotonic() - first) if first else 0.0


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy (returned) or the time is up (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


# -- the real daemon on the bundled clip ---------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "assets" / "demo" / "highway_dashcam.mp4"
MODEL = REPO / "assets" / "models" / "squeezedet_kitti_int8.tflite"
CLIP_SIZE = (1280, 720)
#: Where the clip's two cars drive (normalised): a zone around them and a counting line below.
ROAD_ZONE = [[0.5, 0.5], [1.0, 0.5], [1.0, 0.8], [0.5, 0.8]]
GATE_LINE = [[0.05, 0.85], [0.95, 0.85]]


def clip_camera(loop: bool = True, max_fps: float | None = 10.0) -> dict:
    source = {"uri": str(CLIP), "loop": loop}
    if max_fps:
        source["max_fps"] = max_fps
    return {"source": source, "zones": {"road": {"points": ROAD_ZONE}},
            "lines": {"gate": {"points": GATE_LINE, "in_direction": "down"}}}


def clip_config(http_port: int, cameras: dict, mqtt_port: int | None = None, **sections) -> dict:
    """A multi-camera config dict on the bundled model; ``sections`` update the top-level sections."""
    cfg = {
        "cameras": cameras,
        # nms 0.3 merges the demo model's partial boxes on the white car (as configs/edge_file.yaml does)
        "model": {"path": str(MODEL), "num_threads": 1, "watch_interval_s": 0, "nms_threshold": 0.3},
        "mqtt": {"enabled": mqtt_port is not None, "host": "127.0.0.1", "port": mqtt_port or 1883,
                 "prefix": "sd", "stats_interval_s": 1.0, "flush_timeout_s": 2.0},
        "run": {"stop_at_end": False},
        "http": {"enabled": True, "port": http_port},
        "logging": {"level": "WARNING"},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


class RunningDaemon:
    """``with RunningDaemon(cfg_dict, tmp_path) as d:`` - the real Daemon on a thread, its HTTP server
    answering; stopped (and joined) on exit."""

    def __init__(self, cfg: dict, workdir, env: dict | None = None):
        import yaml

        self.path = Path(workdir) / "edge.yaml"
        self.path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.env = env or {}
        self.daemon = None
        self.thread = None
        self.result: list = []

    def __enter__(self) -> RunningDaemon:
        import socket
        import threading

        from pipeline.config import load_edge_config
        from pipeline.daemon import Daemon

        self.cfg = load_edge_config(self.path, env=self.env)
        self.daemon = Daemon(self.cfg)
        self.thread = threading.Thread(target=lambda: self.result.append(self.daemon.run()), daemon=True)
        self.thread.start()

        def listening():
            try:
                socket.create_connection(("127.0.0.1", self.cfg.http.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        if not wait_until(listening, 30):
            self.__exit__(None, None, None)
            raise TimeoutError(f"http server did not listen on {self.cfg.http.port}")
        return self

    @property
    def port(self) -> int:
        return self.cfg.http.port

    def __exit__(self, *exc) -> None:
        self.daemon.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "daemon did not stop"
