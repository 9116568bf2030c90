#!/usr/bin/env bash
# Retake docs/webui.png (the README's picture of the web page): the browser test's run, i.e. the daemon
# with two cameras on the bundled model (assets/models/squeezedet_kitti_int8.tflite) and the sample clip,
# a zone and a counting line each, its page opened in headless Chromium; the test's own checks must pass
# before the screenshot is written. Usage: scripts/webui_screenshot.sh [output.png]
source "$(dirname "$0")/_env.sh"
ensure_chromium
ensure_venv "train-cpu,edge,dev,onnx,openvino"   # the test suite's environment (scripts/test.sh)
cd "$REPO_ROOT"
out="$(realpath -m "${1:-docs/webui.png}")"
log "writing $out"
SQUEEZEDET_DOCS_SCREENSHOT="$out" exec "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_pipeline_browser.py::test_page_shows_every_camera_live
