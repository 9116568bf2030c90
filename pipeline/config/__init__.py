"""The edge daemon's configuration: one YAML file validated by pydantic, secrets from the environment.

One module per concern, every name importable from here as ``from pipeline.config import X``:

* ``camera``   one camera: source, tracker, zones, masks, lines, filters, snapshots
* ``services`` what the cameras share: model and engine, MQTT, run, HTTP, logging
* ``edge``     the whole file: ``EdgeConfig``, ``load_edge_config``, secrets (``resolve_secrets``)
"""

from pipeline.config.camera import (
    CameraConfig,
    LineConfig,
    MaskConfig,
    ObjectFilter,
    Point,
    SnapshotConfig,
    SourceConfig,
    TrackerConfig,
    ZoneConfig,
)
from pipeline.config.edge import (
    ENV_HTTP_TOKEN,
    ENV_PASSWORD,
    ENV_USERNAME,
    EdgeConfig,
    load_edge_config,
    resolve_secrets,
)
from pipeline.config.services import (
    HomeAssistantConfig,
    HttpConfig,
    LogConfig,
    ModelConfig,
    MqttConfig,
    RunConfig,
    TLSConfig,
)

__all__ = [
    "ENV_HTTP_TOKEN", "ENV_PASSWORD", "ENV_USERNAME", "CameraConfig", "EdgeConfig", "HomeAssistantConfig",
    "HttpConfig", "LineConfig", "LogConfig", "MaskConfig", "ModelConfig", "MqttConfig", "ObjectFilter", "Point",
    "RunConfig", "SnapshotConfig", "SourceConfig", "TLSConfig", "TrackerConfig", "ZoneConfig",
    "load_edge_config", "resolve_secrets",
]
