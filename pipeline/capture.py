"""Opening a source with OpenCV: a V4L2 camera, an RTSP/HTTP stream, a GStreamer pipeline, a video file
(with optional hardware decode) or a folder of images read like a video. What reads the opened capture,
on its own thread, is ``pipeline.sources.FrameSource``."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pipeline.redact import redact_uri
from squeezedet.core.preprocess import IMAGE_SUFFIXES
from squeezedet.errors import SqueezeDetError

if TYPE_CHECKING:
    from pipeline.config.camera import SourceConfig

log = logging.getLogger("pipeline.sources")  # one logger name for everything about a camera's source

#: A URL: a scheme and at least one character of address (a bare "rtsp://" is taken for a file name).
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]")


class SourceError(SqueezeDetError):
    """A source cannot be opened or read (fatal at start-up for files and folders only)."""


class Capture(Protocol):
    """The part of cv2.VideoCapture the reader uses (lets tests inject failing sources)."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


Opener = Callable[["SourceConfig"], Capture]


def source_kind(uri: str, backend: str = "auto") -> str:
    """'camera' | 'stream' | 'pipeline' | 'folder' | 'file' for a configured uri."""
    if backend == "gstreamer":
        return "pipeline"
    if uri.isdigit() or uri.startswith("/dev/"):
        return "camera"
    if _SCHEME.match(uri):
        return "stream"
    return "folder" if Path(uri).is_dir() else "file"


def is_live(kind: str) -> bool:
    """Live sources keep only the newest frame and are reopened when lost; files and folders are read in order."""
    return kind in ("camera", "stream", "pipeline")


class FolderCapture:
    """Images of a folder in name order, read like a video; undecodable files are skipped."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f"{self.folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder")
        self._next = 0

    def read(self):
        import cv2

        while self._next < len(self._files):
            path = self._files[self._next]
            self._next += 1
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is not None:
                return True, img
            log.warning("skipping unreadable image", extra={"fields": {"path": str(path)}})
        return False, None

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self._files = []


def open_capture(cfg) -> Capture:
    """Open the configured source with OpenCV; SourceError (one line) when it cannot be opened."""
    import cv2

    kind = source_kind(cfg.uri, cfg.backend)
    if kind == "folder":
        return FolderCapture(cfg.uri)
    if kind == "file" and not Path(cfg.uri).is_file():
        raise SourceError(f"{cfg.uri}: video file not found")
    if kind == "camera":
        device = int(cfg.uri) if cfg.uri.isdigit() else cfg.uri
        use_v4l2 = cfg.backend == "v4l2" or (cfg.backend == "auto" and sys.platform.startswith("linux"))
        cap = cv2.VideoCapture(device, cv2.CAP_V4L2 if use_v4l2 else cv2.CAP_ANY)
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, cfg.width), (cv2.CAP_PROP_FRAME_HEIGHT, cfg.height),
                            (cv2.CAP_PROP_FPS, cfg.fps)):
            if value:
                cap.set(prop, value)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's queue would add latency we then drop
    elif kind == "stream":
        ms = int(cfg.stream_timeout_s * 1000)
        threads = [cv2.CAP_PROP_N_THREADS, cfg.decode_threads] if cfg.decode_threads else []
        cap = cv2.VideoCapture(cfg.uri, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms,
                                                         cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms, *threads, *_hwaccel(cfg)])
    elif kind == "pipeline":
        cap = cv2.VideoCapture(cfg.uri, cv2.CAP_GSTREAMER)
    else:
        api = cv2.CAP_FFMPEG if cfg.backend == "ffmpeg" else cv2.CAP_ANY
        cap = cv2.VideoCapture(cfg.uri, api, [cv2.CAP_PROP_N_THREADS, cfg.decode_threads or 1, *_hwaccel(cfg)])
        if not cap.isOpened() and cfg.decode_threads is None and cfg.hwaccel == "none":
            cap.release()  # a reader other than FFmpeg may refuse the decoder-thread hint: open as before
            cap = cv2.VideoCapture(cfg.uri, api)
    if not cap.isOpened():
        cap.release()
        hw = cfg.hwaccel
        why = f"hardware decode '{hw}' unavailable, or " if kind in ("file", "stream") and hw not in ("none", "any") \
            else ""
        raise SourceError(f"{cfg.uri}: cannot open {kind} ({why}unreadable, unsupported or busy)")
    if kind in ("file", "stream") and cfg.hwaccel != "none":
        used = int(cap.get(cv2.CAP_PROP_HW_ACCELERATION))
        log.info("video decode", extra={"fields": {"uri": redact_uri(cfg.uri), "asked": cfg.hwaccel,
                                                   "hardware": _ACCEL_NAMES.get(used, str(used))}})
    return cap


#: OpenCV's VideoAccelerationType values -> config names (0 = software).
_ACCEL_NAMES = {0: "none", 1: "any", 2: "d3d11", 3: "vaapi", 4: "mfx", 5: "drm"}


def _hwaccel(cfg) -> list[int]:
    """VideoCapture open parameters for ``source.hwaccel`` (nothing for software decode)."""
    import cv2

    name = cfg.hwaccel
    if name == "none":
        return []
    api = getattr(cv2, f"VIDEO_ACCELERATION_{name.upper()}", None)
    if api is None:
        raise SourceError(f"{cfg.uri}: hwaccel {name} is not supported by this OpenCV build ({cv2.__version__})")
    return [cv2.CAP_PROP_HW_ACCELERATION, api]
