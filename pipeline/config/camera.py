"""One camera's settings: where its frames come from, how its tracks are smoothed, and the zones, masks,
counting lines, object filters and snapshots that turn tracks into what it reports."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.config.base import TOPIC_LEVEL, Strict


class SourceConfig(Strict):
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


class TrackerConfig(Strict):
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


class _Shape(Strict):
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


class ObjectFilter(Strict):
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


class SnapshotConfig(Strict):
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


class CameraConfig(Strict):
    """One camera. In ``cameras:`` the key is the name and ``source`` is required; in the short
    single-camera form ``camera:`` holds these settings and ``source``/``tracker`` stay top level."""

    name: str = Field("camera", pattern=TOPIC_LEVEL.pattern)  #: topic level: <prefix>/<name>/...
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
                if not TOPIC_LEVEL.match(key):
                    raise ValueError(f"{kind}.{key}: a name may use letters, digits, '_' and '-' only")
        return self


