"""Is the daemon healthy? The heartbeat file it writes while frames flow, and ``squeezedet-edge
--healthcheck``, which reads that file's age (or asks the running daemon's ``/healthz``)."""

from __future__ import annotations

import json
import logging
import os
import time

from pipeline.config import EdgeConfig
from squeezedet.core.io import atomic_write_json

log = logging.getLogger("pipeline.daemon")  # the daemon writes the heartbeat


class Heartbeat:
    """Writes run.health_file at most once a second while frames flow: the last frame time of every camera
    (a supervisor reads the file's age, an operator its content). No path: nothing is written."""

    def __init__(self, path: str | None):
        self.path = path
        self._last = float("-inf")

    def beat(self, last_frames: dict[str, float | None], now: bool = False) -> None:
        """``last_frames``: camera -> epoch seconds of its last frame; ``now`` ignores the once-a-second limit."""
        clock = time.monotonic()
        if not self.path or (not now and clock - self._last < 1.0):
            return
        newest = max((t for t in last_frames.values() if t is not None), default=None)
        if newest is None or time.time() - newest > 1.5:
            return  # no frame since the last beat: let the file age
        self._last = clock
        try:
            atomic_write_json(self.path, {"cameras": {n: t and round(t, 3) for n, t in last_frames.items()}})
        except OSError as exc:
            log.warning("cannot write health file", extra={"fields": {"path": self.path, "error": str(exc)}})


def healthcheck(cfg: EdgeConfig, path: str) -> tuple[bool, str]:
    """With http.enabled: the running daemon's /healthz (every camera's last frame within
    http.health_max_age_s). Otherwise: run.health_file was written within run.health_max_age_s; the
    message names cameras whose last frame is older (they are reconnecting: a restart would not help)."""
    if cfg.http.enabled:
        from pipeline.web.probe import probe_healthz

        return probe_healthz(cfg.http)
    hf = cfg.run.health_file
    if not hf:
        return False, f"{path}: run.health_file is not set, nothing to check"
    try:
        age = time.time() - os.stat(hf).st_mtime
    except FileNotFoundError:
        return False, f"{hf}: no heartbeat yet (no frame processed)"
    if age > cfg.run.health_max_age_s:
        return False, f"{hf}: last frame {age:.0f} s ago (limit {cfg.run.health_max_age_s:.0f} s)"
    stale = []
    try:
        cams = json.loads(open(hf).read() or "{}").get("cameras", {})
        now = time.time()
        stale = [n for n, t in cams.items() if t is None or now - t > cfg.run.health_max_age_s]
    except (OSError, ValueError, AttributeError):
        pass
    note = f"; no recent frame from {','.join(stale)}" if stale else ""
    return True, f"{hf}: healthy, last frame {age:.1f} s ago{note}"
