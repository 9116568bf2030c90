"""The detector: a validated exported model (.tflite, .onnx or OpenVINO .xml) + its metadata, on the back end
the config names, and the watcher that swaps in a new one live.

A model is only ever used after it has been loaded *and* checked on the side: metadata hash matches,
input/output shapes agree with the metadata, and a dry run on a blank frame returns a finite tensor.
The frame loop holds a plain reference to the current Detector; swapping that reference is atomic,
so a reload never pauses detection and a rejected file leaves the running model untouched.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from squeezedet.backends import BackendOptions
from squeezedet.core.metadata import file_sha256, sidecar_path, weights_path
from squeezedet.core.postprocess import Detections
from squeezedet.errors import ModelFileError, first_line
from squeezedet.inference import ModelPredictor

log = logging.getLogger(__name__)


def default_threads() -> int:
    """Inference threads when the config gives none: one per core, at most 4."""
    return max(1, min(os.cpu_count() or 1, 4))


class Detector(ModelPredictor):
    """Frame (uint8 RGB, any size) in, Detections in frame pixels out — the predictor that
    `squeezedet predict --model` uses, plus load-time checks and inference timing. One caller only."""

    def __init__(self, model_path, num_threads: int | None = None, delegate: str | None = None,
                 score_threshold: float | None = None, nms_threshold: float | None = None,
                 top_k: int | None = None, max_detections: int | None = None, backend: str = "auto",
                 options: BackendOptions | None = None):
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelFileError(f"{self.path}: model file not found")
        super().__init__(self.path, num_threads, delegate, score_threshold, nms_threshold, top_k, max_detections,
                         backend=backend, options=options)
        self.sha256 = self.meta.model_sha256 or file_sha256(self.path)
        self.model_id = self.meta.model_id or self.sha256[:12]
        self.last_inference_ms = 0.0
        self._validate()

    @classmethod
    def from_config(cls, cfg) -> Detector:
        """From the daemon's model config (a squeezedet.backends.EngineConfig with the model's path and
        decode settings)."""
        return cls(cfg.path, cfg.num_threads or default_threads(), cfg.delegate, cfg.score_threshold, cfg.nms_threshold,
                   cfg.top_k, cfg.max_detections, backend=cfg.backend, options=cfg.options())

    @property
    def runtime(self) -> str:
        """The engine (and device), e.g. ``ai_edge_litert`` or ``openvino 2026.4.1 CPU``."""
        return self.model.describe()

    def _validate(self) -> None:
        meta = self.meta
        if meta.output != "raw_convdet":
            raise ModelFileError(f"{self.path}: unsupported output '{meta.output}' (expected raw_convdet)")
        self.model.check_shapes()
        want_in = (1, meta.input_height, meta.input_width, 3)
        try:
            raw = self.model(np.zeros(want_in, dtype=np.uint8))
        except (RuntimeError, ValueError) as exc:
            raise ModelFileError(f"{self.path}: dry run failed ({first_line(exc)})") from None
        if not np.all(np.isfinite(raw)):
            raise ModelFileError(f"{self.path}: dry run produced non-finite values")

    def raw(self, batch: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.model(batch)
        self.last_inference_ms = (time.perf_counter() - t0) * 1000.0
        return out

    def detect(self, image_rgb: np.ndarray) -> Detections:
        return self.predict(image_rgb)

def _signature(path: Path) -> tuple:
    """Cheap change detector for the model and its sidecar: (mtime_ns, size) of both, None if absent."""
    out = []
    for p in _model_files(path):
        try:
            st = p.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _content(path: Path) -> tuple:
    """What actually decides a reload: hashes of the model and its sidecar."""
    return tuple(file_sha256(p) if p.is_file() else None for p in _model_files(path))


def _model_files(path: Path) -> tuple:
    """The model, its sidecar and, for OpenVINO IR, the weights .bin: a change of any of them is a new model."""
    bin_path = weights_path(path)
    return (path, sidecar_path(path)) + ((bin_path,) if bin_path is not None else ())


class ModelWatcher:
    """Background thread that loads a replacement model when the file changes or a reload is asked for.

    A change must be seen unchanged for one more poll before it is loaded (a copy in progress is not
    loaded half-written); a touched file with identical content is ignored; a file that fails to load
    is reported once and not retried until it changes again.
    """

    def __init__(self, cfg, on_loaded: Callable[[Detector], None], on_rejected: Callable[[str], None]):
        self.cfg = cfg
        self.path = Path(cfg.path)
        self._on_loaded = on_loaded
        self._on_rejected = on_rejected
        self._seen = _signature(self.path)
        self._tried = self._seen
        self._loaded = _content(self.path)
        self._wake = threading.Event()
        self._forced = False
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def request_reload(self) -> None:
        """Reload now even if the file looks unchanged (the command topic's reload_model)."""
        self._forced = True
        self._wake.set()

    def _run(self) -> None:
        interval = self.cfg.watch_interval_s or None
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            if self._stop:
                return
            forced, self._forced = self._forced, False
            sig = _signature(self.path)
            if not forced:
                if sig != self._seen:  # still changing (or just changed): look again next poll
                    self._seen = sig
                    continue
                if sig == self._tried:
                    continue
            self._seen = self._tried = sig
            try:
                content = _content(self.path)
            except OSError:  # replaced between the stat and the read: look again next poll
                self._seen = self._tried = None
                continue
            if not forced and content == self._loaded:
                continue
            self._load(content, "command" if forced else "file changed")

    def _load(self, content: tuple, reason: str) -> None:
        t0 = time.perf_counter()
        try:
            detector = Detector.from_config(self.cfg)
        except Exception as exc:  # noqa: BLE001 - any bad file must leave the running model in place
            message = str(exc) if isinstance(exc, ModelFileError) else f"{self.path}: {type(exc).__name__}: {exc}"
            log.error("model rejected, keeping the running model",
                      extra={"fields": {"path": str(self.path), "trigger": reason, "reason": message}})
            self._on_rejected(message)
            return
        self._loaded = content
        log.info("model loaded", extra={"fields": {
            "path": str(self.path), "model_id": detector.model_id, "trigger": reason,
            "load_ms": round((time.perf_counter() - t0) * 1000, 1)}})
        self._on_loaded(detector)
