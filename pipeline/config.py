"""Edge daemon configuration: one YAML file validated by pydantic, secrets from the environment.

Unknown keys are rejected and the first error is reported on one line naming the key path, e.g.
``configs/edge.yaml: mqtt.qso: unknown key``. Secrets never need to live in the YAML: the MQTT
username/password come from ``SQUEEZEDET_MQTT_USERNAME`` / ``SQUEEZEDET_MQTT_PASSWORD`` or a
``password_file`` (e.g. a systemd credential), which win over values written in the file; the HTTP
token likewise from ``SQUEEZEDET_HTTP_TOKEN`` or ``http.token_file``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.dataclasses import dataclass

from squeezedet.backends.options import EngineConfig
from squeezedet.config import format_validation_error, load_yaml
from squeezedet.errors import ConfigError

ENV_USERNAME = "SQUEEZEDET_MQTT_USERNAME"
ENV_PASSWORD = "SQUEEZEDET_MQTT_PASSWORD"
ENV_HTTP_TOKEN = "SQUEEZEDET_HTTP_TOKEN"

#: Camera names and the topic prefix become MQTT topic levels: no wildcards, separators or spaces.
_TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9_\-]+$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    #: FFmpeg decoder threads for video files and streams; None = 1 for files, FFmpeg's own choice (one per
    #: core) for streams. Frame threading costs CPU (720p H.264 here: 6.4 ms per frame on 2 threads against
    #: 4.9 ms on 1) that the detector needs when it keeps every core busy; a live stream too big for one
    #: core to decode in real time (4K, or 1080p on a Pi without hardware decode) needs more.
    decode_threads: int | None = Field(None, ge=1)
    #: Hardware video decode for files and streams (OpenCV's FFmpeg backend): none, any (the first one that
    #: works, else software), or a named API (vaapi: Intel/AMD on Linux; drm; d3d11 and mfx: Windows). A
    #: named API that is not available fails the source with one line; ``any`` falls back and logs it.
    hwaccel: Literal["none", "any", "vaapi", "drm", "d3d11", "mfx"] = "none"

    @model_validator(mode="after")
    def _backoff_order(self):
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self


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


Point = tuple[float, float]


class _Shape(_Strict):
    """Points in frame pixels or normalised to [0, 1] (``coordinates: auto`` = normalised when every
    value is <= 1), so a zone drawn on a 1080p still keeps working when the stream is 720p."""

    coordinates: Literal["auto", "pixels", "normalized"] = "auto"

    def is_normalized(self, points) -> bool:
        if self.coordinates == "auto":
            return all(0.0 <= v <= 1.0 for p in points for v in p)
        return self.coordinates == "normalized"


class ZoneConfig(_Shape):
    """A region of interest: an object is in it when its box's bottom centre (where it touches the
    ground) has been inside for ``min_frames`` consecutive frames, and leaves after as many outside."""

    points: list[Point] = Field(min_length=3)
    min_frames: int = Field(3, ge=1)  #: inertia: a one-frame touch never counts
    labels: list[str] | None = None  #: only these labels count here (None = all)


class MaskConfig(_Shape):
    """Detections whose bottom centre lies inside are dropped before tracking (trees, a TV, a road
    beyond the fence)."""

    points: list[Point] = Field(min_length=3)
    labels: list[str] | None = None  #: mask only these labels (None = all)


class LineConfig(_Shape):
    """A counting line from ``points[0]`` to ``points[1]``; a confirmed track whose bottom centre
    crosses it counts once, as ``in`` when it moves in ``in_direction`` (image directions: up = towards
    the top of the frame), else ``out``."""

    points: tuple[Point, Point]
    in_direction: Literal["up", "down", "left", "right"] = "down"
    labels: list[str] | None = None  #: only these labels are counted (None = all)

    @model_validator(mode="after")
    def _geometry(self):
        (ax, ay), (bx, by) = self.points
        if (ax, ay) == (bx, by):
            raise ValueError("points: the two points of a line must differ")
        dx, dy = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}[self.in_direction]
        if -(by - ay) * dx + (bx - ax) * dy == 0:
            raise ValueError(f"in_direction: {self.in_direction} runs along the line, not across it")
        return self


class ObjectFilter(_Strict):
    """Per-label plausibility limits applied to raw detections before tracking (box area in frame
    pixels, aspect ratio = width / height)."""

    min_score: float | None = Field(None, ge=0, le=1)
    min_area: float | None = Field(None, ge=0)
    max_area: float | None = Field(None, gt=0)
    min_ratio: float | None = Field(None, gt=0)
    max_ratio: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _order(self):
        for lo, hi in (("min_area", "max_area"), ("min_ratio", "max_ratio")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and b < a:
                raise ValueError(f"{hi}: must be >= {lo}")
        return self


class SnapshotConfig(_Strict):
    """A JPEG of each confirmed object (published retained on ``P/C/<label>/snapshot``), again when its
    best score improves by ``min_score_gain`` (at most every ``min_interval_s`` per track)."""

    enabled: bool = False
    crop: bool = False  #: the object's box with a margin instead of the whole frame
    crop_margin: float = Field(0.2, ge=0, le=2)  #: crops: extra context around the box, x box size
    width: int | None = Field(None, ge=16)  #: output size; one of the two = keep the aspect ratio
    height: int | None = Field(270, ge=16)
    quality: int = Field(80, ge=10, le=100)
    draw_box: bool = True
    min_score_gain: float = Field(0.05, gt=0, le=1)
    min_interval_s: float = Field(5.0, ge=0)
    save_dir: str | None = None  #: also write <camera>-<label>-<id>-<time>.jpg here
    max_dir_mb: float = Field(100.0, gt=0)  #: oldest saved snapshots are deleted beyond this


class CameraConfig(_Strict):
    """One camera. In ``cameras:`` the key is the name and ``source`` is required; in the short
    single-camera form ``camera:`` holds these settings and ``source``/``tracker`` stay top level."""

    name: str = Field("camera", pattern=_TOPIC_LEVEL.pattern)  #: topic level: <prefix>/<name>/...
    source: SourceConfig | None = None
    tracker: TrackerConfig | None = None  #: None = the top-level tracker (keys given here override it)
    zones: dict[str, ZoneConfig] = Field(default_factory=dict)
    masks: list[MaskConfig] = Field(default_factory=list)
    lines: dict[str, LineConfig] = Field(default_factory=dict)
    #: label -> limits; "*" applies to labels without their own entry
    filters: dict[str, ObjectFilter] = Field(default_factory=dict)
    snapshots: SnapshotConfig = Field(default_factory=SnapshotConfig)

    @model_validator(mode="after")
    def _names(self):
        for kind in ("zones", "lines"):
            for key in getattr(self, kind):
                if not _TOPIC_LEVEL.match(key):
                    raise ValueError(f"{kind}.{key}: a name may use letters, digits, '_' and '-' only")
        return self


class TLSConfig(_Strict):
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False  #: skip host name verification (self-signed test brokers only)


class HomeAssistantConfig(_Strict):
    enabled: bool = False
    discovery_prefix: str = "homeassistant"
    device_name: str | None = None  #: default: "SqueezeDet <camera>" (one device per camera)
    #: Home Assistant's birth/will topic: on "online" discovery and every state are sent again.
    status_topic: str | None = None  #: default: <discovery_prefix>/status
    support_url: str | None = None  #: shown in Home Assistant's origin info (e.g. your site's runbook)


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


class HttpConfig(_Strict):
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


class LogConfig(_Strict):
    format: Literal["kv", "json"] = "kv"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class EdgeConfig(_Strict):
    """Either the short single-camera form (``camera`` + ``source`` [+ ``tracker``]) or ``cameras:``, a
    mapping of name -> camera settings with its own ``source``. After validation ``cameras`` is always
    filled (ordered as written), each camera with its source and its resolved tracker settings."""

    camera: CameraConfig | None = None
    source: SourceConfig | None = None
    cameras: dict[str, CameraConfig] | None = None
    model: ModelConfig
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)  #: default for every camera
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    logging: LogConfig = Field(default_factory=LogConfig)

    @model_validator(mode="before")
    @classmethod
    def _merge_tracker(cls, data):
        """A camera's ``tracker:`` keys override the top-level tracker's, key by key."""
        if not isinstance(data, dict) or not isinstance(data.get("cameras"), dict):
            return data
        top = data.get("tracker") if isinstance(data.get("tracker"), dict) else {}
        cameras = {}
        for name, cam in data["cameras"].items():
            if isinstance(cam, dict):
                cam = dict(cam)
                cam.setdefault("name", name)
                own = cam.get("tracker")
                if own is None or isinstance(own, dict):
                    cam["tracker"] = {**top, **(own or {})}
            cameras[name] = cam
        return {**data, "cameras": cameras}

    @model_validator(mode="after")
    def _normalise(self):
        if self.cameras is not None:
            if self.source is not None or self.camera is not None:
                raise ValueError("cameras: give either cameras or camera/source, not both")
            if not self.cameras:
                raise ValueError("cameras: at least one camera is required")
            for key, cam in self.cameras.items():
                if cam.name != key:
                    raise ValueError(f"cameras.{key}.name: must equal its key or be left out")
                if cam.source is None:
                    raise ValueError(f"cameras.{key}.source: Field required")
            return self
        if self.source is None:
            raise ValueError("source: Field required (or give cameras)")
        camera = self.camera or CameraConfig()
        if camera.source is not None or camera.tracker is not None:
            raise ValueError("camera: source and tracker belong at the top level in the single-camera form")
        camera = camera.model_copy(update={"source": self.source, "tracker": self.tracker})
        self.camera = camera
        self.cameras = {camera.name: camera}
        return self

    @property
    def single(self) -> bool:
        """Written in the short single-camera form."""
        return self.source is not None


def load_edge_config(path, env: dict | None = None) -> EdgeConfig:
    """Read, validate and resolve secrets; every problem is a one-line ConfigError."""
    raw = load_yaml(path)
    try:
        cfg = EdgeConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, str(path))) from None
    return resolve_secrets(cfg, os.environ if env is None else env, str(path))


_KEYED = re.compile(r"^([A-Za-z0-9_.\- ]+): (.+)$")


def _format_error(exc: ValidationError, source: str) -> str:
    """Like format_validation_error, but our own checks (``ValueError("key: reason")`` raised by a
    model validator) name the full dotted key instead of the model's (or ``<root>``)."""
    errs = exc.errors()
    first = errs[0]
    if first["type"] == "unexpected_keyword_argument":  # how a dataclass section (model) says "extra_forbidden"
        loc = ".".join(str(p) for p in first["loc"])
        more = f" (+{len(errs) - 1} more error(s))" if len(errs) > 1 else ""
        return f"{source}: {loc}: unknown key{more}"
    if first["type"] == "value_error":
        match = _KEYED.match(str(first["msg"]).removeprefix("Value error, "))
        if match:
            loc = ".".join(str(p) for p in first["loc"])
            key = f"{loc}.{match.group(1)}" if loc else match.group(1)
            more = f" (+{len(errs) - 1} more error(s))" if len(errs) > 1 else ""
            return f"{source}: {key}: {match.group(2)}{more}"
    return format_validation_error(exc, source)


def _expand_env(text: str, env, key: str, source: str) -> str:
    def value(match):
        name = match.group(1)
        if name not in env:
            raise ConfigError(f"{source}: {key}: environment variable {name} is not set")
        return env[name]

    return _ENV_REF.sub(value, text)


def resolve_secrets(cfg: EdgeConfig, env, source: str = "<config>") -> EdgeConfig:
    """Expand ${VAR} in every source uri; fill mqtt.username/password from the environment or
    password_file (env wins over the file, the file over the YAML)."""
    cameras = {}
    for name, cam in cfg.cameras.items():
        key = "source.uri" if cfg.single else f"cameras.{name}.source.uri"
        uri = _expand_env(cam.source.uri, env, key, source)
        cameras[name] = cam.model_copy(update={"source": cam.source.model_copy(update={"uri": uri})})
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
    update = {"cameras": cameras, "mqtt": mqtt.model_copy(update={"username": username, "password": password}),
              "http": cfg.http.model_copy(update={"token": _http_token(cfg.http, env, source)})}
    if cfg.single:
        (only,) = cameras.values()
        update.update(source=only.source, camera=only)
    return cfg.model_copy(update=update)


def _http_token(http: HttpConfig, env, source: str) -> str | None:
    """SQUEEZEDET_HTTP_TOKEN wins over http.token_file, which wins over http.token."""
    token = env.get(ENV_HTTP_TOKEN)
    if not token and http.token_file:
        try:
            token = Path(http.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{source}: http.token_file: cannot read {http.token_file} ({exc.strerror})") from None
        if not token:
            raise ConfigError(f"{source}: http.token_file: {http.token_file} is empty")
    return token or http.token or None
