# Shared set-up for scripts/demo.sh and scripts/test.sh (sourced, not run).
# Creates ./.venv on first use and installs the project with the requested extras; finds or installs
# mosquitto (a local broker for the demo and the MQTT tests).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SQUEEZEDET_VENV:-$REPO_ROOT/.venv}"
PY="$VENV/bin/python"

log() { printf '\033[1m[%s]\033[0m %s\n' "$(basename "$0")" "$*" >&2; }

ensure_venv() {  # ensure_venv EXTRAS (e.g. "edge" or "train-cpu,edge,dev")
  local extras="$1"
  if [ ! -x "$PY" ]; then
    log "creating virtual environment $VENV"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      # Debian/Ubuntu ship venv separately.
      apt_install python3-venv
      python3 -m venv "$VENV"
    fi
    "$PY" -m pip install --quiet --upgrade pip
  fi
  local stamp="$VENV/.installed-$(echo "$extras" | tr ',' '-')"
  # The tested set of versions (constraints.txt) unless SQUEEZEDET_CONSTRAINTS=none: then the newest
  # releases pyproject.toml allows (README "Development": running the suite against them).
  local constraints=(-c "$REPO_ROOT/constraints.txt")
  if [ "${SQUEEZEDET_CONSTRAINTS:-}" = "none" ]; then constraints=(); stamp="$stamp-latest"; fi
  if [ ! -f "$stamp" ] || [ "$REPO_ROOT/pyproject.toml" -nt "$stamp" ] || [ "$REPO_ROOT/constraints.txt" -nt "$stamp" ]; then
    log "installing squeezedet[$extras]${constraints:+ (tested versions, constraints.txt)} (first run takes a few minutes)"
    "$PY" -m pip install --quiet --disable-pip-version-check ${constraints[@]+"${constraints[@]}"} -e "$REPO_ROOT[$extras]"
    touch "$stamp"
  fi
}

apt_install() {  # apt_install PACKAGE: as root, or with passwordless sudo, or say the exact command
  local pkg="$1"
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    log "installing $pkg (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    log "installing $pkg (sudo apt-get)"
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
  else
    log "$pkg is not installed; run: sudo apt-get install -y $pkg"
    exit 1
  fi
}

ensure_mosquitto() {
  if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    return 0
  fi
  apt_install mosquitto
}

ensure_openssl() {  # the TLS broker test makes a throw-away CA with it
  command -v openssl >/dev/null 2>&1 || apt_install openssl
}

ensure_chromium() {  # the browser test of the daemon's web page (headless, Debian's package)
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || apt_install chromium
}

mosquitto_bin() {
  command -v mosquitto 2>/dev/null || echo /usr/sbin/mosquitto
}
