"""Credentials out of URLs before they reach a log line, a status message or the web API."""

from __future__ import annotations

import re

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_SECRET_KEY = re.compile(r"pass|pwd|token|key|auth|secret|sig", re.I)


def _redact_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    base, sep, query = rest.partition("?")
    if "@" in base:  # the user info ends at the *last* @ before the query: passwords may hold '@' and '/'
        base = "***@" + base.rsplit("@", 1)[1]
    if sep:
        query = "&".join(f"{pair.split('=', 1)[0]}=***" if _SECRET_KEY.search(pair.split("=", 1)[0]) else pair
                         for pair in query.split("&"))
    return f"{scheme}://{base}{sep}{query}"


def redact_uri(text: str) -> str:
    """Every URL in ``text`` with its credentials masked, for logs, status messages and the web API:
    ``rtsp://user:p@ss@host/x`` -> ``rtsp://***@host/x``, ``http://cam/v.cgi?user=a&pwd=s`` -> ``...pwd=***``."""
    return _URL.sub(lambda m: _redact_url(m.group(0)), text)
