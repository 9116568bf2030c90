"""Edge daemon configuration: one YAML file validated by pydantic, secrets from the environment.

Unknown keys are rejected and the first error is reported on one line naming the key path, e.g.
``configs/edge.yaml: mqtt.qso: unknown key``. Secrets never need to live in the YAML: the MQTT
username/password come from ``SQUEEZEDET_MQTT_USERNAME`` / ``SQUEEZEDET_MQTT_PASSWORD`` or a
``password_file`` (e.g. a systemd credential), which win over values written in the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from squeezedet.config import format_validation_error, load_yaml
from squeezedet.errors import ConfigError

ENV_USERNAME = "SQUEEZEDET_MQTT_USERNAME"
ENV_PASSWORD = "SQUEEZEDET_MQTT_PASSWORD"

#: Camera names and the topic prefix become MQTT topic levels: no wildcards, separators or spaces.
_TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9_\-]+$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CameraConfig(_Strict):
    name: str = Field("camera", pattern=_TOPIC_LEVEL.pattern)  #: topic level: <prefix>/<name>/...


class SourceConfig(_Strict):
    """Where frames come from. ``uri`` is a V4L2 index ("0") or device path, a video file, an
    rtsp/http(s) URL, an image folder, or a GStreamer pipeline (with backend: gstreamer).
    ``${VAR}`` in the uri is taken from the environment (keeps stream passwords out of the YAML)."""

    uri: str
    backend: Literal["auto", "v4l2", "ffmpeg", "gstreamer"] = "auto"
    loop: bool = False  #: files and folders: start again at the end
    #: Deliver at most this many frames per second (files: pace playback; live: skip the rest).
    max_fps: float | None = Field(None, gt=0)
    #: Requested capture mode for camera devices (ignored for files and URLs).
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    fps: float | None = Field(None, gt=0)
    reconnect_initial_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    #: Open/read timeout for network streams so a stalled RTSP server counts as a lost stream.
    stream_timeout_s: float = Field(10.0, gt=0)
    prefetch: int = Field(4, ge=1)  #: files: frames decoded ahead of the detector

    @model_validator(mode="after")
    def _backoff_order(self):
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self


class ModelConfig(_Strict):
    path: str  #: exported model (.tflite, .onnx or OpenVINO .xml) with its model.json sidecar next to it
    #: Inference engine (squeezedet.backends): auto picks by file type and what is installed.
    backend: Literal["auto", "litert", "onnxruntime", "openvino"] = "auto"
    num_threads: int = Field(4, ge=1)
    delegate: str | None = None  #: litert: shared library of a TFLite delegate (EdgeTPU, GPU)
    device: str = "CPU"  #: openvino: CPU, GPU, NPU or AUTO
    #: onnxruntime execution providers in order of preference (missing ones are skipped, cpu is always last)
    providers: list[Literal["tensorrt", "cuda", "cpu"]] = Field(default_factory=lambda: ["cpu"])
    cache_dir: str | None = None  #: openvino compiled-model cache / TensorRT engine cache folder
    #: Decode settings; None = the defaults stored in the model's metadata.
    score_threshold: float | None = Field(None, ge=0, le=1)
    nms_threshold: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    max_detections: int | None = Field(None, ge=1)
    #: Seconds between checks of the model file for a replacement; 0 disables polling
    #: (a reload can still be asked for on the command topic).
    watch_interval_s: float = Field(2.0, ge=0)


class TrackerConfig(_Strict):
    """Multi-frame smoothing: a track reaches consumers only once it is confirmed."""

    iou_threshold: float = Field(0.3, gt=0, le=1)  #: minimum IoU to associate a detection with a track
    smoothing: Literal["ema", "median"] = "ema"
    ema_alpha: float = Field(0.5, gt=0, le=1)  #: weight of the newest score
    median_window: int = Field(5, ge=1)  #: last N frames, missed frames counting as 0
    threshold: float = Field(0.5, ge=0, le=1)  #: smoothed score needed to count a hit
    min_hits: int = Field(3, ge=1)  #: consecutive detected frames at/above threshold to confirm
    max_missed: int = Field(5, ge=1)  #: consecutive missed frames that end a track
    #: An ``update`` event is sent when the box moved (IoU with the last reported box below this)
    #: or the smoothed score changed by at least update_score_delta.
    update_iou: float = Field(0.7, gt=0, le=1)
    update_score_delta: float = Field(0.1, gt=0, le=1)


class TLSConfig(_Strict):
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False  #: skip host name verification (self-signed test brokers only)


class HomeAssistantConfig(_Strict):
    enabled: bool = False
    discovery_prefix: str = "homeassistant"
    device_name: str | None = None  #: default: "SqueezeDet <camera>"


class MqttConfig(_Strict):
    enabled: bool = True  #: False: detect (and write output video) without any broker
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    prefix: str = Field("squeezedet", pattern=_TOPIC_LEVEL.pattern)
    client_id: str | None = None  #: default: squeezedet-edge-<camera>
    keepalive: int = Field(30, ge=1)
    qos: Literal[0, 1, 2] = 1  #: detections, events, stats
    retain: bool = False  #: retain detections/events (state topics are always retained)
    username: str | None = None
    password: str | None = None  #: prefer SQUEEZEDET_MQTT_PASSWORD or password_file
    password_file: str | None = None
    tls: TLSConfig | None = None
    #: Messages waiting while the broker is away; when full the oldest is dropped and counted.
    queue_size: int = Field(1000, ge=1)
    max_inflight: int = Field(20, ge=1)  #: handed to the client library but not yet acknowledged
    reconnect_min_s: int = Field(1, ge=1)
    reconnect_max_s: int = Field(30, ge=1)
    detections_interval_s: float = Field(0.0, ge=0)  #: minimum gap between detections messages
    stats_interval_s: float = Field(10.0, gt=0)
    flush_timeout_s: float = Field(5.0, ge=0)  #: at shutdown, wait this long for queued messages
    home_assistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)

    @model_validator(mode="after")
    def _backoff_order(self):
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self


class RunConfig(_Strict):
    max_frames: int | None = Field(None, ge=1)  #: stop after this many processed frames
    stop_at_end: bool = True  #: a non-looping file or folder ends the daemon when exhausted
    output_video: str | None = None  #: annotated debug video, written atomically on exit
    output_fps: float | None = Field(None, gt=0)  #: default: the source's frame rate
    #: Touched after processed frames (at most once a second): `squeezedet-edge --healthcheck` and the
    #: Docker HEALTHCHECK read its age. None = no heartbeat.
    health_file: str | None = None
    health_max_age_s: float = Field(60.0, gt=0)  #: older heartbeat = unhealthy (frames stopped flowing)


class LogConfig(_Strict):
    format: Literal["kv", "json"] = "kv"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class EdgeConfig(_Strict):
    camera: CameraConfig = Field(default_factory=CameraConfig)
    source: SourceConfig
    model: ModelConfig
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    logging: LogConfig = Field(default_factory=LogConfig)


def load_edge_config(path, env: dict | None = None) -> EdgeConfig:
    """Read, validate and resolve secrets; every problem is a one-line ConfigError."""
    raw = load_yaml(path)
    try:
        cfg = EdgeConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None
    return resolve_secrets(cfg, os.environ if env is None else env, str(path))


def _expand_env(text: str, env, key: str, source: str) -> str:
    def value(match):
        name = match.group(1)
        if name not in env:
            raise ConfigError(f"{source}: {key}: environment variable {name} is not set")
        return env[name]

    return _ENV_REF.sub(value, text)


def resolve_secrets(cfg: EdgeConfig, env, source: str = "<config>") -> EdgeConfig:
    """Expand ${VAR} in source.uri; fill mqtt.username/password from the environment or
    password_file (env wins over the file, the file over the YAML)."""
    uri = _expand_env(cfg.source.uri, env, "source.uri", source)
    mqtt = cfg.mqtt
    username = env.get(ENV_USERNAME) or mqtt.username
    password = env.get(ENV_PASSWORD)
    if not password and mqtt.password_file:
        pw_path = Path(mqtt.password_file)
        try:
            password = pw_path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{source}: mqtt.password_file: cannot read {pw_path} ({exc.strerror})") from None
    password = password or mqtt.password
    if password and not username:
        raise ConfigError(f"{source}: mqtt.username: required when a password is set")
    return cfg.model_copy(update={
        "source": cfg.source.model_copy(update={"uri": uri}),
        "mqtt": mqtt.model_copy(update={"username": username, "password": password}),
    })
