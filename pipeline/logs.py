"""The daemon's log lines on stdout: ``key=value`` for people, or one JSON object per line for collectors.
Fields beside the message come from ``extra={"fields": {...}}``; stderr is kept for the fatal one-liner."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone


def _record_fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict:
    fields = {
        "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
        **(getattr(record, "fields", None) or {}),
    }
    if record.exc_info:
        fields["exc"] = formatter.formatException(record.exc_info)
    return fields


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=info logger=pipeline.sources msg="source lost" camera=front``"""

    def format(self, record):
        parts = []
        for key, value in _record_fields(record, self).items():
            text = str(value)
            if not text or any(c in text for c in ' ="\n'):
                text = json.dumps(text)
            parts.append(f"{key}={text}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (for journald/Loki/Elasticsearch)."""

    def format(self, record):
        return json.dumps(_record_fields(record, self), default=str)


def configure_logging(fmt: str, level: str) -> None:
    """Our one handler on the root logger (replacing one set up before), OpenCV's own logging matched to it."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    handler.squeezedet_edge = True
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "squeezedet_edge", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    try:  # OpenCV's own warnings (e.g. a missing /dev/video0) would bypass the formatter
        import cv2

        cv2.utils.logging.setLogLevel(
            cv2.utils.logging.LOG_LEVEL_DEBUG if level == "DEBUG" else cv2.utils.logging.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):
        pass
