"""Frame sources: camera, network stream, video file or image folder, read on their own thread.

Two delivery disciplines, because the two kinds of source want opposite things:

* live sources (V4L2 camera, RTSP/HTTP stream, GStreamer pipeline) keep only the newest frame: a
  detector slower than the camera sees the present, not a growing backlog; overwritten frames are
  counted in ``dropped``. A lost device or stream is reopened with exponential back-off, forever.
* ordered sources (video file, image folder) hand over every frame in order through a small
  prefetch queue, so decoding overlaps inference without dropping anything.

State changes (online / reconnecting / ended) go to an ``on_status`` callback so the daemon can
publish them; nothing here knows about MQTT.
"""

from __future__ import annotations

import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from squeezedet.core.preprocess import IMAGE_SUFFIXES
from squeezedet.errors import SqueezeDetError

if TYPE_CHECKING:
    from pipeline.config import SourceConfig

log = logging.getLogger(__name__)

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_END = object()  # queue sentinel: an ordered source is exhausted


class SourceError(SqueezeDetError):
    """A source cannot be opened or read (fatal at start-up for files and folders only)."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  #: uint8 RGB [H, W, 3]
    index: int  #: capture sequence number (gaps = frames dropped by a live source)
    timestamp: float  #: epoch seconds at capture


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
    if _URL.match(uri):
        return "stream"
    return "folder" if Path(uri).is_dir() else "file"


def is_live(kind: str) -> bool:
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


class FrameSource:
    """One source read on a background thread; ``get()`` returns the next frame for the detector."""

    def __init__(self, cfg, camera: str = "camera", opener: Opener | None = None,
                 on_status: Callable[[str, str], None] | None = None):
        self.cfg = cfg
        self.camera = camera
        self.kind = source_kind(cfg.uri, cfg.backend)
        self.live = is_live(self.kind)
        self.dropped = 0  #: live frames overwritten before the detector took them
        self.fps = 0.0  #: frame rate the capture reports (0 when unknown)
        self._opener = opener or open_capture
        self._on_status = on_status or (lambda state, detail: None)
        self._cap: Capture | None = None
        self._first: np.ndarray | None = None
        self._next_index = 0
        self._last_delivery = 0.0
        self._problem = ""  # why the source is being reopened, for the status detail
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=cfg.prefetch)
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self) -> None:
        """First open on the caller's thread: a bad file or folder fails start-up with SourceError;
        a live source that is not there yet is retried by the reader thread instead."""
        try:
            self._cap = self._opener(self.cfg)
        except SourceError as exc:
            if not self.live:
                raise
            self._problem = redact_uri(str(exc))
            log.warning("source not available, will retry",
                        extra={"fields": {"camera": self.camera, "reason": self._problem}})
            self._on_status("reconnecting", self._problem)
            return
        import cv2

        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not self.live:
            ok, first = self._cap.read()
            if not ok or first is None:
                self._cap.release()
                raise SourceError(f"{self.cfg.uri}: no decodable frames")
            self._first = first
        self._on_status("online", redact_uri(self.cfg.uri))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"source-{self.camera}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading. The capture is released by the reader thread itself once its current read
        returns, so a read blocked on a stalled stream is never pulled from under OpenCV."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        elif self._cap is not None:
            self._cap.release()
            self._cap = None

    @property
    def ended(self) -> bool:
        """True once an ordered source is exhausted (and not looping) and every frame was taken."""
        return self._ended.is_set()

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize() if not self.live else int(self._latest is not None)

    def get(self, timeout: float = 0.5) -> Frame | None:
        """Next frame, or None after ``timeout`` (or when the source has ended)."""
        if self.live:
            with self._cond:
                if self._latest is None:
                    self._cond.wait(timeout)
                frame, self._latest = self._latest, None
                return frame
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _END:
            if not self._ended.is_set():
                self._ended.set()
                self._on_status("ended", "end of input")
            return None
        return item

    # -- reader thread -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._read_loop()
        finally:
            if self._cap is not None:
                self._cap.release()
                self._cap = None

    def _read_loop(self) -> None:
        attempt = 0
        rewound = False  # the last thing done was a seek back to the start, no frame read since
        read_since_open = True  # a frame was read since the capture was (re)opened
        empty_opens = 0  # looping file: reopens in a row that gave no frame (they back off like reconnects)
        while not self._stop.is_set():
            if self._cap is None:
                attempt += 1
                if not self._reconnect(attempt):
                    continue
                attempt, read_since_open = 0, False
            if self._first is not None:
                ok, bgr, self._first = True, self._first, None
            else:
                ok, bgr = self._read()
            if ok and bgr is not None:
                rewound, read_since_open, empty_opens = False, True, 0
                self._deliver(bgr)
                continue
            if self.cfg.loop and not self.live and not rewound and self._rewind():
                rewound = True  # a second failed read right after it falls through to a reopen
                continue
            self._cap.release()
            self._cap = None
            if self.live:
                log.warning("source lost", extra={"fields": {"camera": self.camera, "uri": redact_uri(self.cfg.uri)}})
                self._problem = "stream lost"
            elif not self.cfg.loop:
                self._put(_END)  # "ended" is reported when the camera takes it, after the frames queued before it
                return
            else:  # a loop restart is a plain reopen; a file that keeps opening without frames backs off
                empty_opens = 0 if read_since_open else empty_opens + 1
                attempt = empty_opens

    def _read(self):
        """cap.read(), with a backend exception counted as a failed read rather than a dead thread."""
        import cv2

        try:
            return self._cap.read()
        except (cv2.error, OSError) as exc:
            log.warning("read failed", extra={"fields": {"camera": self.camera, "reason": str(exc).strip()}})
            return False, None

    def _rewind(self) -> bool:
        """A looping video file starts again by seeking to frame 0: a third of the cost of reopening it
        (14 ms against 35-48 ms for the 720p sample clip), paid every loop. OpenCV may report a seek as
        done that was not: the read after it then fails, and the caller reopens the file instead."""
        if self.kind != "file" or not hasattr(self._cap, "set"):
            return False
        import cv2

        try:
            return bool(self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0))
        except (cv2.error, OSError):
            return False

    def _reconnect(self, attempt: int) -> bool:
        """Wait the back-off delay, then try to reopen; True once the source is back."""
        if attempt > 1 or self.live:
            delay = min(self.cfg.reconnect_initial_s * 2 ** (attempt - 1), self.cfg.reconnect_max_s)
            log.info("reconnecting source",
                     extra={"fields": {"camera": self.camera, "attempt": attempt, "delay_s": round(delay, 2)}})
            self._on_status("reconnecting", f"{self._problem}; attempt {attempt}, retry in {delay:g}s")
            if self._stop.wait(delay):
                return False
        import cv2

        try:
            self._cap = self._opener(self.cfg)
        except (SourceError, cv2.error, OSError) as exc:
            self._problem = redact_uri(str(exc).strip())
            log.warning("reconnect failed",
                        extra={"fields": {"camera": self.camera, "attempt": attempt, "reason": self._problem}})
            return False
        if self.live or attempt > 1:
            log.info("source reconnected", extra={"fields": {"camera": self.camera, "attempts": attempt}})
            self._on_status("online", "reconnected")
        return True

    def _deliver(self, bgr: np.ndarray) -> None:
        import cv2

        index = self._next_index
        self._next_index += 1
        if self.cfg.max_fps:
            gap = 1.0 / self.cfg.max_fps - (time.monotonic() - self._last_delivery)
            if gap > 0:
                if self.live:
                    return  # too early: skip, the next camera frame is fresher anyway
                self._stop.wait(gap)
            self._last_delivery = time.monotonic()
        frame = Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), index, time.time())
        if self.live:
            with self._cond:
                if self._latest is not None:
                    self.dropped += 1
                self._latest = frame
                self._cond.notify()
        else:
            self._put(frame)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_SECRET_KEY = re.compile(r"pass|pwd|token|key|auth|secret|sig", re.I)


def _redact_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    base, sep, query = rest.partition("?")
    if "@" in base:  # the user info ends at the *last* @ before the query: passwords may hold '@' and '/'
        base = "***@" + base.rsplit("@", 1)[1]
    if sep:
        query = "&".join(f"{pair.split('=', 1)[0]}=***" if _SECRET_KEY.search(pair.split("=", 1)[0]) else pair
                         for pair in query.split("&"))
    return f"{scheme}://{base}{sep}{query}"


def redact_uri(text: str) -> str:
    """Every URL in ``text`` with its credentials masked, for logs, status messages and the web API:
    ``rtsp://user:p@ss@host/x`` -> ``rtsp://***@host/x``, ``http://cam/v.cgi?user=a&pwd=s`` -> ``...pwd=***``."""
    return _URL.sub(lambda m: _redact_url(m.group(0)), text)
