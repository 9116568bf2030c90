#!/usr/bin/env bash
# Refresh constraints.txt, the exact set of package versions the test suite passed with (what test.sh,
# demo.sh, CI and the Docker images install). Builds a throw-away venv with every extra at the newest
# releases (no constraints), runs the whole suite on it, and only if it passes writes the frozen set.
#   ./scripts/refresh_constraints.sh              # newest releases, suite, then constraints.txt
#   ./scripts/refresh_constraints.sh -x -q        # extra args go to pytest
# pyproject.toml keeps lower bounds only (library users); this file is the one tested combination.
source "$(dirname "$0")/_env.sh"
EXTRAS="train-cpu,edge,dev,onnx,openvino"
export SQUEEZEDET_VENV="$(mktemp -d)/venv"
export SQUEEZEDET_CONSTRAINTS=none
trap 'rm -rf "$(dirname "$SQUEEZEDET_VENV")"' EXIT
VENV="$SQUEEZEDET_VENV"; PY="$VENV/bin/python"
ensure_mosquitto
ensure_openssl
ensure_chromium
ensure_venv "$EXTRAS"
cd "$REPO_ROOT"
log "running the suite on the newest releases"
"$PY" -m pytest "$@"
log "suite passed: writing constraints.txt"
TMP="$(mktemp "$REPO_ROOT/.constraints.XXXXXX")"
{
  echo "# The tested set: exact versions the whole suite passed with (scripts/refresh_constraints.sh, $(date -u +%F),"
  echo "# Python $("$PY" -c 'import platform; print(platform.python_version(), platform.machine())')). Installed by scripts/test.sh,"
  echo "# scripts/demo.sh, CI and docker/Dockerfile.{edge,train}; pyproject.toml keeps lower bounds for library users."
  echo "# The GPU build of TensorFlow is pinned with the CPU one it matches."
  "$PY" -m pip freeze --exclude-editable --disable-pip-version-check | LC_ALL=C sort -f
  "$PY" -m pip freeze --exclude-editable --disable-pip-version-check | sed -n 's/^tensorflow[-_]cpu==/tensorflow==/p'
} > "$TMP"
mv "$TMP" "$REPO_ROOT/constraints.txt"
log "constraints.txt: $(grep -vc '^#' "$REPO_ROOT/constraints.txt") packages"
