"""Frame sources: camera, network stream, video file or image folder, read on their own thread.

Two delivery disciplines, because the two kinds of source want opposite things:

* live sources (V4L2 camera, RTSP/HTTP stream, GStreamer pipeline) keep only the newest frame: a
  detector slower than the camera sees the present, not a growing backlog; overwritten frames are
  counted in ``dropped``. A lost device or stream is reopened with exponential back-off, forever.
* ordered sources (video file, image folder) hand over every frame in order through a small
  prefetch queue, so decoding overlaps inference without dropping anything.

Opening a source is ``pipeline.capture``'s. State changes (online / reconnecting / ended) go to an
``on_status`` callback so the daemon can publish them; nothing here knows about MQTT.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.capture import Capture, Opener, SourceError, is_live, open_capture, source_kind
from pipeline.redact import redact_uri

__all__ = ["Frame", "FrameSource", "Opener", "SourceError", "open_capture", "source_kind"]

log = logging.getLogger(__name__)

_END = object()  # queue sentinel: an ordered source is exhausted


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  #: uint8 RGB [H, W, 3]
    index: int  #: capture sequence number (gaps = frames dropped by a live source)
    timestamp: float  #: epoch seconds at capture


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
