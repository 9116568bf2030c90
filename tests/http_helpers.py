"""Test helpers for the daemon's HTTP server: plain urllib requests and an MJPEG stream reader."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass
class Reply:
    status: int
    content_type: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def get(port: int, path: str, headers: dict | None = None, timeout: float = 10.0) -> Reply:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Reply(r.status, r.headers.get("Content-Type", ""), dict(r.headers), r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.headers.get("Content-Type", ""), dict(e.headers), e.read())


def read_mjpeg(port: int, path: str, parts: int, headers: dict | None = None,
               timeout: float = 20.0) -> tuple[str, list[tuple[dict, bytes]], float]:
    """Read ``parts`` JPEG parts of a multipart/x-mixed-replace stream: (content type, [(part headers,
    jpeg bytes)], seconds taken from the first part to the last)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    out: list[tuple[dict, bytes]] = []
    deadline = time.monotonic() + timeout
    first = None
    with urllib.request.urlopen(req, timeout=timeout) as r:
        ctype = r.headers.get("Content-Type", "")
        boundary = ("--" + ctype.split("boundary=", 1)[1]).encode()
        assert r.readline().rstrip(b"\r\n") == boundary
        while len(out) < parts and time.monotonic() < deadline:
            head = {}
            while (line := r.readline().rstrip(b"\r\n")):
                key, _, value = line.decode().partition(":")
                head[key.strip().lower()] = value.strip()
            data = r.read(int(head["content-length"]))
            assert r.readline() == b"\r\n" and r.readline().rstrip(b"\r\n") == boundary
            first = first or time.monotonic()
            out.append((head, data))
    return ctype, out, (time.monotonic() - first) if first else 0.0


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy (returned) or the time is up (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None
