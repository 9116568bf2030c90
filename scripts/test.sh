#!/usr/bin/env bash
# The whole test suite, from a fresh clone: venv + deps (TensorFlow CPU, LiteRT, OpenCV, paho-mqtt,
# aiohttp, albumentations, pytest), mosquitto and openssl for the broker tests, chromium for the web page
# test, then pytest. Extra args go to pytest.
source "$(dirname "$0")/_env.sh"
ensure_mosquitto
ensure_openssl
ensure_chromium
ensure_venv "train-cpu,edge,dev,onnx,openvino"
cd "$REPO_ROOT"
log "running the test suite"
exec "$PY" -m pytest "$@"
