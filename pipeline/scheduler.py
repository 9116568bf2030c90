"""One detector for every camera: a single inference thread serves the cameras round-robin.

N cameras cost one model's memory and one interpreter (a TFLite interpreter has one caller at a time).
Each camera thread hands in one frame and waits for its detections; the inference thread takes the
waiting requests in camera order, starting after the camera it served last, so a camera with a fast
stream cannot starve a slow one: a waiting frame is served after at most one inference of every other
camera (``Result.behind`` <= cameras - 1), whatever their frame rates. The scheduler never idles the
detector to wait for a camera that has no frame ready (work-conserving), so a camera whose thread is
late to hand in its next frame simply takes the next round.
A request that raises (a frame the model cannot take) fails that camera's frame only.

The model is swapped between requests (``swap``): every result says which detector produced it, so a
camera's frame is always decoded with the class names of the model that saw it.

The inference thread runs the engine and nothing else: each camera's thread resizes its frame to the
model input when it hands it in and decodes the raw output when it collects it, so with several cameras
(or one camera pipelining, see CameraWorker) that work overlaps inference instead of queueing behind it.

A frame handed to an idle detector is started before ``submit`` returns. The camera thread goes on to
Python work (decoding and tracking its previous frame) that holds the GIL, and the detector thread, woken
for the new frame, needs the GIL to start the engine: left to the interpreter it waits until the camera
thread lets go, up to the 5 ms switch interval (1.5 ms median between frames on the sample clip,
docs/edge.md#throughput). Waiting on an Event releases the GIL, so the engine starts first (0.2 ms) and
then runs without the GIL while the camera works. A busy detector needs no such wait: it goes from one
frame to the next without giving up the GIL. So the wait ends as soon as the detector runs *any* frame:
with several cameras, one whose frame was queued behind another camera's picked first goes on at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from pipeline.detector import Detector
from squeezedet.core.postprocess import Detections

#: Longest a camera waits for an idle detector to start its frame (it starts in well under a millisecond;
#: the bound only keeps a stalled detector thread from holding the camera).
HANDOFF_WAIT_S = 0.1


@dataclass
class Result:
    detections: Detections
    detector: Detector  #: the model that produced them (class names, model_id)
    inference_ms: float  #: the detector's own inference time for this frame
    wait_ms: float  #: time spent queued behind other cameras
    behind: int  #: other cameras' inferences served while this frame waited (at most cameras - 1)


@dataclass
class _Request:
    image: np.ndarray
    ticket: int = 0  # inferences served before this request arrived
    batch: np.ndarray | None = None  # the model input, resized by the camera thread
    prepared_for: Detector | None = None  # the detector whose input size ``batch`` has
    queued: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    # Set once the detector thread runs a frame: this one, or another camera's picked before it. Either way
    # the camera that submitted it has no reason to keep waiting in submit().
    released: threading.Event = field(default_factory=threading.Event)
    raw: np.ndarray | None = None
    detector: Detector | None = None  # the detector that ran it
    inference_ms: float = 0.0
    wait_ms: float = 0.0
    behind: int = 0
    error: BaseException | None = None


class SharedDetector:
    """Fair, thread-safe front of one Detector for several cameras."""

    def __init__(self, detector: Detector, cameras: list[str]):
        self.detector = detector
        self.cameras = list(cameras)
        self.served = {name: 0 for name in self.cameras}  #: inferences per camera
        self.total = 0  #: inferences, all cameras
        self._pending: dict[str, _Request] = {}
        self._cond = threading.Condition()
        self._next = 0  # index in self.cameras where the next round-robin scan starts
        self._stop = False
        self._busy = False  # a request is in the engine (set and cleared under _cond)
        self._thread = threading.Thread(target=self._run, name="detector", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stop = True
            for req in self._pending.values():
                req.error = RuntimeError("detector stopped")
                req.released.set()
                req.done.set()
            self._pending.clear()
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def swap(self, detector: Detector) -> None:
        """Use ``detector`` from the next request on (the running one finishes with the old model)."""
        self.detector = detector

    def detect(self, camera: str, image: np.ndarray) -> Result:
        """Detections for ``camera``'s frame; blocks while other cameras' frames are served first."""
        return self.wait(self.submit(camera, image))

    def prepare(self, image: np.ndarray) -> tuple[Detector, np.ndarray]:
        """The model input for ``image`` (resized for the current detector), on the caller's thread: a
        camera prepares its next frame while the detector still runs its previous one."""
        detector = self.detector
        return detector, detector.prepare(image)

    def submit(self, camera: str, image: np.ndarray,
               prepared: tuple[Detector, np.ndarray] | None = None) -> _Request:
        """Hand in ``camera``'s frame without waiting (one frame per camera at a time): the camera can
        post-process its previous frame while the detector runs this one. ``wait()`` collects it.
        ``prepared`` is what ``prepare(image)`` returned (a model swapped since is re-prepared for).
        If the detector is idle, returns once it is running a frame, normally this one (module docstring:
        the GIL); if it is busy, returns at once."""
        detector, batch = prepared or self.prepare(image)
        with self._cond:
            req = _Request(image, self.total, batch, detector)
            if self._stop:
                raise RuntimeError("detector stopped")
            if camera in self._pending:
                raise RuntimeError(f"camera {camera} already has a frame in the detector")
            idle = not self._busy and not self._pending and self._thread.is_alive()
            self._pending[camera] = req
            self._cond.notify_all()
        if idle:
            req.released.wait(HANDOFF_WAIT_S)
        return req

    @staticmethod
    def wait(req: _Request) -> Result:
        """The result of a submitted frame, decoded on the caller's thread (re-raises what the detector
        raised for it)."""
        req.done.wait()
        if req.error is not None:
            raise req.error
        h, w = req.image.shape[:2]
        dets = req.detector.decode(req.raw[0], (w, h))
        return Result(dets, req.detector, req.inference_ms, req.wait_ms, req.behind)

    def _take(self) -> tuple[str, _Request] | None:
        with self._cond:
            while not self._stop and not self._pending:
                self._cond.wait(0.5)
            if self._stop:
                return None
            self._busy = True
            for req in self._pending.values():  # the engine is busy now: no camera waits in submit() for it
                req.released.set()
            n = len(self.cameras)
            for k in range(n):
                name = self.cameras[(self._next + k) % n]
                if name in self._pending:
                    self._next = (self._next + k + 1) % n
                    return name, self._pending.pop(name)
            name = next(iter(self._pending))  # a camera not in the list (tests): still served
            return name, self._pending.pop(name)

    def _run(self) -> None:
        while True:
            item = self._take()
            if item is None:
                return
            name, req = item
            detector = self.detector  # read once: a swap lands between requests, never inside one
            started = time.monotonic()
            with self._cond:
                behind = self.total - req.ticket
            try:
                batch = req.batch if req.prepared_for is detector else detector.prepare(req.image)  # swapped
                req.raw = detector.raw(batch)
                req.detector, req.inference_ms = detector, detector.last_inference_ms
                req.wait_ms, req.behind = (started - req.queued) * 1000.0, behind
            except Exception as exc:  # noqa: BLE001 - the camera that sent the frame gets the error
                req.error = exc
            with self._cond:
                self.served[name] = self.served.get(name, 0) + 1
                self.total += 1
                self._busy = False
            req.done.set()
