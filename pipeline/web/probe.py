"""``squeezedet-edge --healthcheck`` against the running daemon's ``/healthz`` (Docker HEALTHCHECK,
systemd watchdogs): stdlib only, the token from the same place the daemon takes it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from pipeline.config import HttpConfig


def probe_healthz(http: HttpConfig, timeout: float = 5.0) -> tuple[bool, str]:
    """(healthy, one line): healthy when /healthz answers 200."""
    host = "127.0.0.1" if http.bind in ("0.0.0.0", "", "localhost") else ("::1" if http.bind == "::" else http.bind)
    url = f"http://{f'[{host}]' if ':' in host else host}:{http.port}/healthz"
    headers = {"Authorization": f"Bearer {http.token}"} if http.token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            body, status = r.read(), r.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{url}: no answer ({reason})"
    try:
        info = json.loads(body)
    except ValueError:
        info = {}
    if status == 200:
        return True, f"{url}: healthy ({len(info.get('cameras', {}))} camera(s) within {info.get('max_age_s')} s)"
    if status == 503:
        ages = {n: c.get("last_frame_age_s") for n, c in info.get("cameras", {}).items() if not c.get("ok")}
        stale = ", ".join(f"{n} (last frame {'never' if a is None else f'{a:.0f} s ago'})" for n, a in ages.items())
        return False, f"{url}: stale: {stale}"
    return False, f"{url}: HTTP {status}"
