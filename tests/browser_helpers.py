"""Headless Chromium (the Debian package) driven over the DevTools protocol with aiohttp's WebSocket
client: open a page with an Authorization header, wait for a JavaScript condition, take screenshots.
No browser download, no extra dependency."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """``with Chromium(tmp) as browser: page = browser.run(coroutine(page))`` - one headless browser."""

    def __init__(self, workdir: Path, width: int = 1280, height: int = 860):
        self.dir = Path(workdir)
        self.size = (width, height)
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    def __enter__(self) -> Chromium:
        binary = chromium_binary()
        assert binary, "no chromium binary"
        profile = self.dir / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        active = profile / "DevToolsActivePort"  # Chromium writes the port it picked here
        active.unlink(missing_ok=True)  # a reused profile must not hand us the last run's port
        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
             f"--window-size={self.size[0]},{self.size[1]}", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=(self.dir / "chromium.log").open("wb"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            if active.is_file() and active.read_text().strip():
                self.port = int(active.read_text().split()[0])
                return self
            time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError(f"chromium did not start: {(self.dir / 'chromium.log').read_text()[-2000:]}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def run(self, job, timeout: float = 90.0):
        """Run ``job(page)`` (a coroutine function taking a Page) against the browser's first tab."""
        async def main():
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{self.port}/json/list") as r:
                    targets = await r.json(content_type=None)
                url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
                async with session.ws_connect(url, max_msg_size=0) as ws:
                    return await job(Page(ws))

        return asyncio.run(asyncio.wait_for(main(), timeout))


class Page:
    """A few DevTools commands on one tab."""

    def __init__(self, ws):
        self.ws = ws
        self._ids = itertools.count(1)

    async def send(self, method: str, **params):
        msg_id = next(self._ids)
        await self.ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = await self.ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"devtools connection closed: {msg.type}")
            data = json.loads(msg.data)
            if data.get("id") == msg_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})

    async def open(self, url: str, headers: dict | None = None) -> None:
        await self.send("Network.enable")
        if headers:
            await self.send("Network.setExtraHTTPHeaders", headers=headers)
        await self.send("Page.enable")
        await self.send("Page.navigate", url=url)

    async def evaluate(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 30.0, interval: float = 0.2):
        """The expression's value once it is truthy; AssertionError with the last value otherwise."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(interval)
        raise AssertionError(f"{expression!r} still {value!r} after {timeout} s")

    async def screenshot(self) -> bytes:
        """PNG of the viewport."""
        return base64.b64decode((await self.send("Page.captureScreenshot", format="png"))["data"])
