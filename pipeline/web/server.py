"""The daemon's HTTP server: web page, JSON API, MJPEG / JPEG frames, /healthz and /metrics.

aiohttp on its own thread with its own asyncio loop: one thread serves any number of viewers (an
MJPEG stream is a coroutine, not a thread), and nothing here runs on the frame loop. The server only
reads what the daemon shows thread-safely (``pipeline.views.DaemonView``: its cameras and ``stats()``). Drawing
and JPEG encoding run on a two-thread pool (``frames.JpegCache``); each viewer is sent at most
``http.stream_fps`` frames per second and always the newest one.

Authentication: with a token configured every path (``/healthz`` and ``/metrics`` included) needs
``Authorization: Bearer <token>`` or HTTP Basic ``<username>:<token>``; anything else gets a 401 with
no data in it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.config import HttpConfig
from pipeline.metrics import daemon_registry
from pipeline.redact import redact_uri
from pipeline.views import CameraView, DaemonView
from pipeline.web.frames import JpegCache, label_css_colour
from squeezedet.errors import ConfigError

log = logging.getLogger("pipeline.web")

BOUNDARY = "squeezedet-frame"
STATIC_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'",
}


class HttpServer:
    """``start()`` binds (a ConfigError if it cannot) and serves on a daemon thread; ``stop()`` ends
    every stream and joins."""

    def __init__(self, daemon: DaemonView, cfg: HttpConfig):
        self.daemon = daemon
        self.cfg = cfg
        self.port = cfg.port
        self.viewers = 0  #: open MJPEG streams
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="http-encode")
        self.caches = {name: JpegCache(worker, self._executor, cfg.jpeg_quality)
                       for name, worker in daemon.cameras.items()}
        self.registry = daemon_registry(daemon, self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._secrets = self._accepted_credentials(cfg)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ConfigError(f"http: server did not start within {timeout:.0f} s")
        if self._error is not None:
            self._thread.join(5)
            raise ConfigError(f"http.port: cannot listen on {self.cfg.bind}:{self.cfg.port} ({self._error})")
        auth = "token" if self._secrets else "none"
        log.info("http server listening", extra={"fields": {
            "url": f"http://{self.cfg.bind}:{self.port}/", "auth": auth, "stream_fps": self.cfg.stream_fps}})
        if auth == "none" and self.cfg.bind not in ("127.0.0.1", "localhost", "::1"):
            log.warning("http server reachable from the network without a token",
                        extra={"fields": {"bind": self.cfg.bind, "hint": "set SQUEEZEDET_HTTP_TOKEN"}})

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._closing is not None and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._closing.set)
            self._thread.join(timeout)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(); a crash after start is logged
            if not self._ready.is_set():
                self._error = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                self._ready.set()
            else:
                log.exception("http server stopped with an error")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.cfg.bind, self.cfg.port, reuse_address=True)
            await site.start()
            self._ready.set()
            await self._closing.wait()
        finally:
            await runner.cleanup()

    # -- app -----------------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth_middleware])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/api/stats", self._stats)
        app.router.add_get("/api/cameras", self._cameras)
        app.router.add_get("/api/{camera}/latest.jpg", self._latest)
        app.router.add_get("/api/{camera}/stream.mjpeg", self._stream)
        app.router.add_get("/api/{camera}/events", self._events)
        return app

    @staticmethod
    def _accepted_credentials(cfg: HttpConfig) -> list[bytes]:
        if not cfg.token:
            return []
        basic = base64.b64encode(f"{cfg.username}:{cfg.token}".encode()).decode()
        return [f"Bearer {cfg.token}".encode(), f"Basic {basic}".encode()]

    def _authorized(self, request: web.Request) -> bool:
        if not self._secrets:
            return True
        given = request.headers.get("Authorization", "").strip()
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "basic":  # normalise the base64 so equivalent encodings compare equal
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            given = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        elif scheme.lower() == "bearer":
            given = f"Bearer {value.strip()}"
        # compare against every accepted form without an early exit (constant time per comparison)
        matches = [hmac.compare_digest(given.encode(), secret) for secret in self._secrets]
        return any(matches)

    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler):
        if not self._authorized(request):
            response = web.json_response({"error": "unauthorized"}, status=401)
            response.headers["WWW-Authenticate"] = 'Basic realm="squeezedet-edge", charset="UTF-8"'
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = web.json_response({"error": exc.reason}, status=exc.status)
        if not response.prepared:  # streams send their headers themselves
            response.headers.update(_SECURITY_HEADERS)
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    def _camera(self, request: web.Request) -> tuple[str, CameraView]:
        name = request.match_info["camera"]
        if name not in self.daemon.cameras:
            raise web.HTTPNotFound(reason=f"no camera named {name!r}")
        return name, self.daemon.cameras[name]

    # -- handlers ------------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.Response:
        return await self._static_file("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES or name == "index.html":
            raise web.HTTPNotFound(reason="no such file")
        return await self._static_file(name)

    async def _static_file(self, name: str) -> web.Response:
        body = resources.files("pipeline.web").joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=STATIC_FILES[name], charset="utf-8")

    async def _stats(self, request: web.Request) -> web.Response:
        stats = await asyncio.to_thread(self._stats_with_counts)
        stats["http"] = {"viewers": self.viewers, "stream_fps": self.cfg.stream_fps}
        return web.json_response(stats, dumps=_dumps)

    def _stats_with_counts(self) -> dict:
        stats = self.daemon.stats()
        per_camera = stats.setdefault("cameras", {})
        for name, worker in self.daemon.cameras.items():
            per_camera[name] = {**(per_camera.get(name) or worker.stats()), "counts": worker.counts()}
        return stats

    async def _cameras(self, request: web.Request) -> web.Response:
        cameras = []
        for name, worker in self.daemon.cameras.items():
            latest = worker.latest()
            stats = worker.stats()
            counts = worker.counts()
            labels = sorted(set(counts.get("labels", {})) | {o.label for o in (latest.objects if latest else [])})
            source = worker.source_uri
            cameras.append({
                "name": name,
                "source": redact_uri(source) if source is not None else None,
                "state": stats.get("source_state"),
                "model_id": stats.get("model_id"),
                "width": latest.image.shape[1] if latest else None,
                "height": latest.image.shape[0] if latest else None,
                "last_frame": latest.index if latest else None,
                "geometry": worker.geometry(),
                "label_colours": {label: label_css_colour(label) for label in labels},
                "stream": f"/api/{name}/stream.mjpeg",
                "latest": f"/api/{name}/latest.jpg",
            })
        return web.json_response({"stream_fps": self.cfg.stream_fps, "cameras": cameras}, dumps=_dumps)

    async def _latest(self, request: web.Request) -> web.Response:
        name, _ = self._camera(request)
        raw = request.query.get("raw", "0").lower() in ("1", "true", "yes")
        jpeg = await self.caches[name].get(raw)
        if jpeg is None:
            return web.json_response({"error": f"camera {name!r} has no frame yet"}, status=503)
        return web.Response(body=jpeg.data, content_type="image/jpeg",
                            headers={"X-Frame-Index": str(jpeg.index)})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """multipart/x-mixed-replace: each part one JPEG at most stream_height rows high, at most
        stream_fps per second, newest only.
        A slow viewer makes its own write wait (and so skips frames); nobody else notices."""
        name, _ = self._camera(request)
        raw = request.query.get("raw", "0").lower() in ("1", "true", "yes")
        cache = self.caches[name]
        response = web.StreamResponse(headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}", "Cache-Control": "no-store",
            "Pragma": "no-cache", **_SECURITY_HEADERS})
        await response.prepare(request)
        interval = 1.0 / self.cfg.stream_fps
        height = self.cfg.stream_height
        sent_key = None
        self.viewers += 1
        try:
            # The closing boundary goes right after each frame: browsers show a part once they see it.
            await response.write(f"--{BOUNDARY}\r\n".encode())
            while not self._closing.is_set():
                if request.transport is None or request.transport.is_closing():
                    break  # the viewer hung up while no new frame came
                jpeg = await cache.get(raw, height)
                if jpeg is not None and jpeg.key != sent_key:
                    head = (f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg.data)}\r\n"
                            f"X-Frame-Index: {jpeg.index}\r\n\r\n").encode()
                    await response.write(head + jpeg.data + f"\r\n--{BOUNDARY}\r\n".encode())
                    sent_key = jpeg.key
                # Wake on a shared grid of 1/stream_fps ticks: viewers ask for the same newest frame at
                # the same moment and share one encode.
                pause = interval - (time.monotonic() % interval)
                try:
                    await asyncio.wait_for(self._closing.wait(), pause)
                except asyncio.TimeoutError:
                    pass
        except (ConnectionResetError, ConnectionError):
            pass  # the viewer went away
        finally:
            self.viewers -= 1
        return response

    async def _events(self, request: web.Request) -> web.Response:
        name, worker = self._camera(request)
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            raise web.HTTPBadRequest(reason="limit must be an integer") from None
        limit = max(1, min(limit, 1000))
        return web.json_response({"camera": name, "events": worker.recent_events(limit=limit)}, dumps=_dumps)

    async def _healthz(self, request: web.Request) -> web.Response:
        """200 while every camera processed a frame within http.health_max_age_s; else 503 naming
        the stale cameras (one stuck camera on a pole is worth a restart)."""
        now = time.monotonic()
        cameras, stale = {}, []
        for name, worker in self.daemon.cameras.items():
            latest = worker.latest()
            age = None if latest is None else round(now - latest.monotonic, 3)
            ok = age is not None and age <= self.cfg.health_max_age_s
            cameras[name] = {"ok": ok, "last_frame_age_s": age, "frame": latest.index if latest else None}
            if not ok:
                stale.append(name)
        body = {"status": "ok" if not stale else "stale", "max_age_s": self.cfg.health_max_age_s,
                "stale": stale, "cameras": cameras}
        return web.json_response(body, status=200 if not stale else 503, dumps=_dumps)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, self.registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response


def _dumps(obj) -> str:
    return json.dumps(obj, default=str, allow_nan=False)
