"""Test helpers for the edge daemon: a real mosquitto on a free loopback port, an MQTT collector, a
tiny deterministic .tflite and synthetic videos in which it finds known boxes.

The tiny model (input 128x64 uint8, 1 anchor of 32x32, classes car/person) is one 16x16/stride-16
convolution with hand-set weights: a grid cell filled with red is a "car", with green a "person",
with confidence sigmoid(20 * fill - 10) where fill is the channel mean over the cell (1.0 for a fully
lit cell). Its box is exactly the anchor of that cell, so tests can compute the expected pixels.
It is built by TensorFlow in a subprocess, once per test session, so TF never enters this process.

Test modules import the ``*_fixture`` functions they use; pytest knows them by their ``name``
(``tiny_model``, ``tiny_models``, ``car_video``, ``broker``). The tiny model is built once per process.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
CLASSES = ["car", "person"]
MODEL_W, MODEL_H = 128, 64
FRAME_W, FRAME_H = 256, 128  # frames are 2x the model input: boxes must come back scaled
CELL = 32  # one model grid cell (16 model px) in frame pixels
RED, GREEN = (255, 0, 0), (0, 255, 0)

_BUILD = textwrap.dedent(
    """
    import sys
    import numpy as np, tensorflow as tf, keras
    out_dir, = sys.argv[1:]
    for name, conf_bias in (("tiny_a", -10.0), ("tiny_b", -9.0)):
        inp = keras.Input((64, 128, 3), dtype="uint8", batch_size=1)
        conv = keras.layers.Conv2D(7, 16, strides=16, padding="same")
        model = keras.Model(inp, conv(keras.layers.Rescaling(1 / 255.0)(inp)))
        k = np.zeros((16, 16, 3, 7), np.float32)
        b = np.zeros(7, np.float32)
        px = 1.0 / 256  # mean over the 16x16 cell
        k[:, :, 0, 0], k[:, :, 1, 0] = 10 * px, -10 * px   # car logit: red minus green
        k[:, :, 1, 1], k[:, :, 0, 1] = 10 * px, -10 * px   # person logit: green minus red
        k[:, :, :, 2] = 20 * px                            # confidence logit: brightness
        b[2] = conf_bias
        conv.set_weights([k, b])                           # channels 3..6: box deltas = 0
        data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        open(f"{out_dir}/{name}.tflite", "wb").write(data)
    """
)
_BUILT: dict[str, Path] = {}


def build_tiny_models(cache_dir: Path) -> dict[str, Path]:
    """tiny_a / tiny_b .tflite + sidecars (different model_id and confidence bias); built once."""
    if not _BUILT:
        cache_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sys.executable, "-c", _BUILD, str(cache_dir)], capture_output=True, text=True,
                              timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        from squeezedet.core.metadata import ModelMetadata, write_metadata

        for name in ("tiny_a", "tiny_b"):
            path = cache_dir / f"{name}.tflite"
            write_metadata(path, ModelMetadata(
                class_names=list(CLASSES), input_width=MODEL_W, input_height=MODEL_H,
                anchor_shapes=[[32.0, 32.0]], score_threshold=0.3, nms_threshold=0.4, model_id=name))
            _BUILT[name] = path
    return dict(_BUILT)


def install_model(src: Path, dest: Path) -> Path:
    """Copy a model and its sidecar to ``dest`` (a .tflite path), each by temp file + rename, the
    sidecar first (the recommended way to deploy: the watcher never sees a half-written file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for s, d in ((src.with_suffix(".json"), dest.with_suffix(".json")), (src, dest)):
        tmp = d.with_name(f".{d.name}.tmp")
        shutil.copyfile(s, tmp)
        os.replace(tmp, d)
    return dest


@pytest.fixture(scope="session", name="tiny_models")
def tiny_models_fixture(tmp_path_factory) -> dict[str, Path]:
    return build_tiny_models(tmp_path_factory.getbasetemp() / "tiny_models")


@pytest.fixture(name="tiny_model")
def tiny_model_fixture(tiny_models, tmp_path) -> Path:
    """A private copy of tiny_a (tests may overwrite it to exercise hot swapping)."""
    return install_model(tiny_models["tiny_a"], tmp_path / "models" / "model.tflite")


# -- synthetic frames ----------------------------------------------------------------------------
def cell_rect_frame(rects, size=(FRAME_W, FRAME_H)) -> np.ndarray:
    """RGB frame, black, with each (row, col, rgb[, fill]) model cell painted (fill scales the colour)."""
    img = np.zeros((size[1], size[0], 3), np.uint8)
    for rect in rects:
        row, col, colour = rect[:3]
        fill = rect[3] if len(rect) > 3 else 1.0
        img[row * CELL:(row + 1) * CELL, col * CELL:(col + 1) * CELL] = np.round(np.array(colour) * fill)
    return img


def expected_box(row: int, col: int) -> list[float]:
    """Frame-pixel xyxy box the tiny model predicts for a lit cell (its anchor, clipped, scaled x2)."""
    cx = (col + 1) * MODEL_W / 9
    cy = (row + 1) * MODEL_H / 5
    x1, y1 = max(cx - 16, 0), max(cy - 16, 0)
    x2, y2 = min(cx + 16, MODEL_W), min(cy + 16, MODEL_H)
    sx, sy = FRAME_W / MODEL_W, FRAME_H / MODEL_H
    return [x1 * sx, y1 * sy, x2 * sx, y2 * sy]


def make_video(path: Path, frames, fps: float = 10.0) -> Path:
    """MJPG .avi from a list of per-frame rect lists (see cell_rect_frame)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (FRAME_W, FRAME_H))
    assert writer.isOpened()
    for rects in frames:
        writer.write(cv2.cvtColor(cell_rect_frame(rects), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(name="car_video")
def car_video_fixture(tmp_path) -> Path:
    """20 frames with a red car in cell (1, 2) from frame 0 on."""
    return make_video(tmp_path / "car.avi", [[(1, 2, RED)]] * 20)


def edge_config(model_path: Path, uri, port: int | None = None, **sections) -> dict:
    """A config dict for the daemon; ``sections`` are merged into the top-level sections."""
    cfg = {
        "camera": {"name": "test_cam"},
        "source": {"uri": str(uri), "reconnect_initial_s": 0.1, "reconnect_max_s": 0.4},
        "model": {"path": str(model_path), "num_threads": 1, "watch_interval_s": 0},
        "tracker": {"min_hits": 2, "max_missed": 3},
        "mqtt": {"enabled": port is not None, "host": "127.0.0.1", "port": port or 1883, "prefix": "sd",
                 "reconnect_min_s": 1, "reconnect_max_s": 1, "stats_interval_s": 1.0, "flush_timeout_s": 3.0},
        "run": {"max_frames": 10},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# -- broker ----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A private mosquitto on 127.0.0.1; persistence on, so a restart keeps persistent sessions."""

    def __init__(self, workdir: Path, port: int | None = None, tls: TLSFiles | None = None,
                 users: dict[str, str] | None = None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.tls = tls
        self.users = users  # name -> password; anonymous clients are refused when set

    def start(self, timeout: float = 10.0) -> Broker:
        if not Path(MOSQUITTO).is_file():
            pytest.skip("mosquitto is not installed")
        conf = self.dir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", f"user {getpass.getuser()}", "persistence true",
                 f"persistence_location {self.dir}/", "max_queued_messages 100000",
                 f"log_dest file {self.dir}/mosquitto.log"]
        if self.tls:
            lines += [f"cafile {self.tls.ca}", f"certfile {self.tls.cert}", f"keyfile {self.tls.key}"]
        if self.users:
            passwd = self.dir / "passwd"
            passwd.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            passwd.chmod(0o600)
            subprocess.run([MOSQUITTO_PASSWD, "-U", str(passwd)], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"mosquitto exited: {(self.dir / 'mosquitto.log').read_text()}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@dataclass
class TLSFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls_files(folder: Path, name: str = "test", names: str = "IP:127.0.0.1,DNS:localhost") -> TLSFiles:
    """A throw-away CA and a server certificate it signed for ``names`` (subjectAltName), via openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / f"{name}-ca.crt", folder / f"{name}-ca.key"
    cert, key, csr = folder / f"{name}-server.crt", folder / f"{name}-server.key", folder / f"{name}-server.csr"
    ext = folder / f"{name}-server.ext"
    ext.write_text(f"subjectAltName={names}\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n")

    def openssl(*args):
        subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True)

    # A CA as Python 3.13's strict verification wants it (basicConstraints and keyUsage, critical).
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", ca_key, "-out", ca)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=mqtt test broker", "-keyout", key, "-out", csr)
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
            "-extfile", ext, "-out", cert)
    for secret in (ca_key, key):
        secret.chmod(0o600)
    return TLSFiles(ca, cert, key)


@pytest.fixture(name="broker")
def broker_fixture(tmp_path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


class Collector:
    """Subscribes (QoS 1) and records every message; reconnects on its own after a broker restart."""

    def __init__(self, port: int, topics=("#",), client_id: str | None = None, clean_session: bool = True,
                 ca: Path | None = None, auth: tuple[str, str] | None = None):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.topics = list(topics)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
                                  clean_session=clean_session)
        self.client.reconnect_delay_set(1, 1)
        if ca:
            self.client.tls_set(ca_certs=str(ca))
        if auth:
            self.client.username_pw_set(*auth)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        assert self._subscribed.wait(5), "collector did not subscribe"

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def json(self, topic: str) -> list:
        return [json.loads(p) for p in self.payloads(topic)]

    def last(self, topic: str):
        got = self.payloads(topic)
        return got[-1].decode() if got else None

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def state_tail(values: list[bytes], went_through: list[str]) -> bool:
    """Whether a retained state topic delivered a non-empty tail of the values it went through. State is
    latest value wins and the daemon connects to the broker in the background (pipeline/mqtt.py), so a value
    set before the connection is up is superseded by the next; all of them arrive when it came up first."""
    got = [v.decode() for v in values]
    return 0 < len(got) <= len(went_through) and got == went_through[-len(got):]


def run_in_thread(daemon):
    """Run a Daemon on a worker thread; returns (thread, result list holding the exit status)."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(daemon.run()), daemon=True)
    thread.start()
    return thread, result
