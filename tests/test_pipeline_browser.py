"""The web page in a real browser: headless Chromium (Debian's package) opens ``/`` of the daemon
running two cameras on the bundled clip, with the token sent as HTTP Basic as a browser does. Each
camera's live image must load, and change between two screenshots a few seconds apart.

``SQUEEZEDET_DOCS_SCREENSHOT=docs/webui.png`` also writes the second screenshot there (how the one in
the README is made: scripts/webui_screenshot.sh)."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import numpy as np
import pytest
from browser_helpers import Chromium, chromium_binary
from http_helpers import RunningDaemon, basic, clip_camera, clip_config
from pipeline_helpers import free_port

TOKEN = "browser-token"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(chromium_binary() is None,
                                 reason="no chromium binary (apt-get install chromium; scripts/test.sh does)")]


def png_array(data: bytes) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def test_page_shows_every_camera_live(tmp_path):
    cameras = {"highway": clip_camera(max_fps=10.0), "overpass": clip_camera(max_fps=6.0)}
    cfg = clip_config(free_port(), cameras, http={"token": TOKEN, "stream_fps": 4.0})

    async def visit(page):
        await page.open(f"http://127.0.0.1:{daemon.port}/", basic("admin", TOKEN))
        title = await page.wait_for("document.body.dataset.live === 'all' && document.title", 45)
        # the figures are filled in from /api/stats
        await page.wait_for("[...document.querySelectorAll('.figures b')].every(b => b.textContent !== '–')", 15)
        boxes = await page.evaluate(
            "[...document.querySelectorAll('img[data-camera]')].map(i => { const r = i.getBoundingClientRect();"
            " return {camera: i.dataset.camera, x: r.x, y: r.y, w: r.width, h: r.height,"
            " natural: [i.naturalWidth, i.naturalHeight]}; })")
        text = await page.evaluate("document.getElementById('cameras').innerText")
        first = await page.screenshot()
        await asyncio.sleep(3.0)
        second = await page.screenshot()
        return title, boxes, text, first, second

    with RunningDaemon(cfg, tmp_path) as daemon, Chromium(tmp_path / "chromium") as browser:
        title, boxes, text, first, second = browser.run(visit)

    assert title == "squeezedet-edge · 2/2 live"
    assert [b["camera"] for b in boxes] == ["highway", "overpass"]
    a, b = png_array(first), png_array(second)
    assert a.shape == b.shape and a.shape[0] > 0
    for box in boxes:
        assert box["natural"] == [853, 480]  # the camera's 1280x720 frames at http.stream_height
        assert box["w"] > 200 and box["h"] > 100
        x, y = int(box["x"]), int(box["y"])
        region_a = a[y:y + int(box["h"]), x:x + int(box["w"])].astype(int)
        region_b = b[y:y + int(box["h"]), x:x + int(box["w"])].astype(int)
        assert region_a.std() > 20, f"{box['camera']}: the image region is blank"
        changed = np.abs(region_a - region_b).mean()
        assert changed > 2.0, f"{box['camera']}: live image did not change ({changed:.2f})"
    for word in ("highway", "overpass", "FPS", "inference ms", "zone road", "line gate"):
        assert word in text

    target = os.environ.get("SQUEEZEDET_DOCS_SCREENSHOT")
    if target:
        from PIL import Image

        img = Image.open(io.BytesIO(second)).convert("RGB")
        img = img.crop((0, 0, img.width, min(img.height, int(max(bx["y"] + bx["h"] for bx in boxes)) + 110)))
        img = img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.LANCZOS)
        img.quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(Path(target), optimize=True)
