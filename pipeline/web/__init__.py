"""The operator's window into the daemon: web page, JSON API, live MJPEG, /healthz, /metrics."""

from pipeline.web.server import HttpServer

__all__ = ["HttpServer"]
