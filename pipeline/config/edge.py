"""The whole config file: validation, the single-camera short form, and secrets from the environment.

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

from pydantic import Field, ValidationError, model_validator

from pipeline.config.base import Strict
from pipeline.config.camera import CameraConfig, SourceConfig, TrackerConfig
from pipeline.config.services import HttpConfig, LogConfig, ModelConfig, MqttConfig, RunConfig
from squeezedet.config import format_validation_error, load_yaml
from squeezedet.errors import ConfigError

ENV_USERNAME = "SQUEEZEDET_MQTT_USERNAME"
ENV_PASSWORD = "SQUEEZEDET_MQTT_PASSWORD"
ENV_HTTP_TOKEN = "SQUEEZEDET_HTTP_TOKEN"

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class EdgeConfig(Strict):
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
    """Like format_validation_error, but naming the full dotted key for our own checks (``ValueError("key:
    reason")`` raised by a model validator names its model's, or ``<root>``), and "unknown key" also for the
    model section, a dataclass (pydantic calls its unknown keys unexpected keyword arguments)."""
    errs = exc.errors()
    first = errs[0]
    loc = ".".join(str(p) for p in first["loc"])
    more = f" (+{len(errs) - 1} more error(s))" if len(errs) > 1 else ""
    if first["type"] == "unexpected_keyword_argument":
        return f"{source}: {loc}: unknown key{more}"
    match = _KEYED.match(str(first["msg"]).removeprefix("Value error, ")) if first["type"] == "value_error" else None
    if match:
        key = f"{loc}.{match.group(1)}" if loc else match.group(1)
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
