"""The daemon's shared services: the model and its engine, MQTT (with TLS and Home Assistant), the run's
limits and files, the HTTP server and logging."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass

from pipeline.config.base import TOPIC_LEVEL, Strict
from squeezedet.backends.options import EngineConfig


@dataclass(config=ConfigDict(extra="forbid"), kw_only=True)
class ModelConfig(EngineConfig):
    """The exported model, its engine and decode settings. The engine keys (backend, num_threads, delegate,
    device, providers, cache_dir, fp16) are squeezedet.backends.EngineConfig's, which the CLIs' flags are
    made from too; here num_threads None means one per core, at most 4 (what measured fastest beside the
    video decoder on the 2-core test machine: 2 threads beat 1 end to end, docs/edge.md#throughput)."""

    path: str  #: exported model (.tflite, .onnx or OpenVINO .xml) with its model.json sidecar next to it
    #: Decode settings; None = the defaults stored in the model's metadata.
    score_threshold: float | None = Field(None, ge=0, le=1)
    nms_threshold: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    max_detections: int | None = Field(None, ge=1)
    #: Seconds between checks of the model file for a replacement; 0 disables polling
    #: (a reload can still be asked for on the command topic).
    watch_interval_s: float = Field(2.0, ge=0)


class TLSConfig(Strict):
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False  #: skip host name verification (self-signed test brokers only)


class HomeAssistantConfig(Strict):
    enabled: bool = False
    discovery_prefix: str = "homeassistant"
    device_name: str | None = None  #: default: "SqueezeDet <camera>" (one device per camera)
    #: Home Assistant's birth/will topic: on "online" discovery and every state are sent again.
    status_topic: str | None = None  #: default: <discovery_prefix>/status
    support_url: str | None = None  #: shown in Home Assistant's origin info (e.g. your site's runbook)


class MqttConfig(Strict):
    enabled: bool = True  #: False: detect (and write output video) without any broker
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    prefix: str = Field("squeezedet", pattern=TOPIC_LEVEL.pattern)
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


class RunConfig(Strict):
    max_frames: int | None = Field(None, ge=1)  #: stop after this many processed frames
    stop_at_end: bool = True  #: a non-looping file or folder ends the daemon when exhausted
    #: Hand frame N+1 to the detector the moment frame N leaves it, and decode, track and report N while
    #: N+1 runs (auto = on). off: take a frame only after the previous one is reported - the freshest frame
    #: from a live camera, at the cost of the engine idling for that work (on 2 busy cores: 3 % fewer
    #: frames a second, docs/edge.md#throughput).
    pipeline: Literal["auto", "on", "off"] = "auto"
    #: OpenCV's threads for colour conversion and resizing; None = OpenCV's default (one per core).
    #: One: every frame's few ms of OpenCV work then costs one core instead of a second core's pool thread
    #: waking, which the inference threads need (daemon CPU per frame 9.1 -> 7.0 ms on the 2-core machine).
    opencv_threads: int | None = Field(1, ge=1)
    output_video: str | None = None  #: annotated debug video, written atomically on exit
    output_fps: float | None = Field(None, gt=0)  #: default: the source's frame rate
    #: Touched after processed frames (at most once a second): `squeezedet-edge --healthcheck` and the
    #: Docker HEALTHCHECK read its age. None = no heartbeat.
    health_file: str | None = None
    health_max_age_s: float = Field(60.0, gt=0)  #: older heartbeat = unhealthy (frames stopped flowing)
    #: Counting-line totals survive restarts here (JSON, written atomically on every change; only
    #: written when a camera has lines). Relative paths are taken from the working directory. None = not kept.
    state_file: str | None = "squeezedet-edge-state.json"


class HttpConfig(Strict):
    """The operator's window (web page, JSON API, /metrics). Off by default and on loopback by default;
    with a token set every path needs ``Authorization: Bearer <token>`` or HTTP Basic ``username:<token>``
    (what a browser asks for). The token comes from SQUEEZEDET_HTTP_TOKEN, token_file or token."""

    enabled: bool = False
    bind: str = "127.0.0.1"  #: "0.0.0.0" to reach it from the network (set a token then)
    port: int = Field(8080, ge=1, le=65535)
    token: str | None = None  #: prefer SQUEEZEDET_HTTP_TOKEN or token_file
    token_file: str | None = None
    username: str = Field("admin", min_length=1)  #: HTTP Basic user name (the password is the token)
    #: Frames per second sent to each live viewer (MJPEG); frames in between are skipped, never queued.
    stream_fps: float = Field(5.0, gt=0, le=60)
    #: Live view frames are scaled down to this many rows (a browser tile is smaller than the camera's
    #: frame, and encoding costs CPU with the square of the size); None = full size. latest.jpg is
    #: always full size.
    stream_height: int | None = Field(480, ge=64)
    jpeg_quality: int = Field(75, ge=10, le=100)
    #: /healthz answers 200 while every camera processed a frame within this many seconds, else 503.
    health_max_age_s: float = Field(10.0, gt=0)


class LogConfig(Strict):
    format: Literal["kv", "json"] = "kv"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


