"""What the daemon shows its local readers, the web server and ``/metrics``: a few thread-safe methods,
typed here as Protocols so those readers depend on this and not on the daemon's insides (and a test's
stand-in daemon only has to provide this much). ``Daemon`` and ``CameraWorker`` implement them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipeline.tracker import TrackedObject


@dataclass(frozen=True)
class LatestFrame:
    """The newest processed frame of a camera, handed over by reference (never copied or encoded)."""

    image: np.ndarray  #: uint8 RGB [H, W, 3], as the detector saw it
    index: int
    timestamp: float  #: epoch seconds at capture
    objects: list[TrackedObject]  #: confirmed tracks of this frame
    monotonic: float  #: time.monotonic() at hand-over


class LatencyView(Protocol):
    """A histogram of inference seconds (``pipeline.metrics.LatencyHistogram``)."""

    def snapshot(self) -> tuple[list[tuple[str, int]], float]: ...


class CameraView(Protocol):
    """One camera as its readers see it; every call is cheap and safe from any thread."""

    name: str
    latency: LatencyView

    @property
    def source_uri(self) -> str | None:
        """The configured source, credentials included: readers redact it before showing it."""
        ...

    def latest(self) -> LatestFrame | None: ...

    def stats(self) -> dict:
        """The camera's ``P/C/stats`` payload fields."""
        ...

    def counts(self) -> dict:
        """``{"labels": {label: n}, "zones": {zone: {label: n}}, "lines": {line: {label: {"in", "out"}}}}``"""
        ...

    def geometry(self) -> dict:
        """Zones, masks and lines in pixels of the latest frame."""
        ...

    def recent_events(self, limit: int = 50) -> list[dict]: ...


class DaemonView(Protocol):
    """The daemon as its readers see it: its cameras and its daemon-wide figures."""

    @property
    def cameras(self) -> Mapping[str, CameraView]: ...

    def stats(self) -> dict:
        """The ``P/stats`` figures, with ``mqtt`` (enabled, connected, queue_depth, dropped) and ``cameras``."""
        ...
