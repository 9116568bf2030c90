#!/usr/bin/env bash
# The Pi / Jetson path, emulated: an arm64 (aarch64) Debian root run through qemu-user, the edge install
# done in it as docker/Dockerfile.edge does it, and the daemon run in it on the bundled clip, its MQTT
# detections compared frame by frame with the same frames run on this (x86_64) host.
#
#   1. arm64 root: debootstrap --arch=arm64 --variant=minbase (Debian bookworm, the base of Raspberry Pi OS
#      Bookworm and of python:3.11-slim-bookworm), cached in ~/.cache/squeezedet/arm64-root and reused.
#   2. install:    python3 -m venv /opt/squeezedet/venv; pip install ".[edge]" -c constraints.txt from PyPI
#                  (timed), then ".[edge,onnx]" for the ONNX Runtime back end (CPU provider).
#   3. run:        a private mosquitto on a free loopback port; the daemon on the first N frames of
#                  assets/demo/highway_dashcam.mp4, on the host and in the root, for LiteRT
#                  (assets/models/squeezedet_kitti_int8.tflite) and ONNX Runtime (an fp32 ONNX export of the
#                  bundled model's float weights, runs/reference/small_float32 or imported from
#                  ../shared/data/reference_weights, made on the host with its venv and cached), each on two inputs:
#                  the frames as PNG at the model's input size (the engine gets the same bytes on both sides)
#                  and the clip itself (decoded and resized by each side's own OpenCV build).
#   4. compare:    per frame, same count and labels, IoU > 0.9, |score difference| <= --score-tol (same
#                  input; measured: identical) or --clip-score-tol (clip; a detection seen on one side only
#                  must sit on the score or NMS threshold, within that tolerance).
# Emulation runs at a small fraction of a device's speed: wall times are printed, never compared.
#
#   sudo ./scripts/arm64_check.sh [--frames N] [--score-tol X] [--clip-score-tol X] [--cpu cortex-a72|cortex-a76]
#                                 [--no-onnx] [--onnx MODEL.onnx (+ its .json)] [--output DIR]
#   sudo ./scripts/arm64_check.sh --preflight      # the precondition checks only
#   sudo ./scripts/arm64_check.sh --reuse-venv     # skip the install, use the last run's venv (iterating only:
#                                                  # proves nothing about the install or changed sources)
# Exit status: 0 every comparison passed; 1 a step or a comparison failed (one line says which);
# 2 a precondition is missing (root, qemu-user-static + binfmt_misc, debootstrap, the host venv).
# Environment: SQUEEZEDET_ARM64_ROOT (cached root), SQUEEZEDET_ARM64_SUITE (bookworm),
# SQUEEZEDET_ARM64_MIRROR (default: the host's first .../debian apt source), SQUEEZEDET_ARM64_PINS
# (extra requirements added to the install, e.g. "onnxruntime-gpu==1.20.1" to see a missing aarch64 wheel fail),
# SQUEEZEDET_ARM64_NO_APT=1 (never apt-get install the tools), SQUEEZEDET_ARM64_DEBOOTSTRAP /
# SQUEEZEDET_ARM64_QEMU (tool paths), SQUEEZEDET_VENV (host venv: edge + onnx extras; TensorFlow for the export).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="arm64_check"
START_S=$(date +%s)
log() { printf '\033[1m[%s]\033[0m %s\n' "$SELF" "$*" >&2; }
fail() { printf '%s: %s\n' "$SELF" "$1" >&2; exit 1; }
precondition() { printf '%s: %s\n' "$SELF" "$1" >&2; exit 2; }

FRAMES=10
SCORE_TOL=0.02        # same engine input: measured identical (38 frames, both back ends, cortex-a72 and -a76)
CLIP_SCORE_TOL=0.15   # clip: measured 0.092 on matched boxes and a car at 0.634 seen on one side (38 frames)
IOU_MIN=0.9
DO_ONNX=1
ONNX_MODEL=""
OUT_DIR="$REPO_ROOT/outputs/arm64_check"
PREFLIGHT=0
REUSE_VENV=0
CPU_MODEL="${SQUEEZEDET_ARM64_CPU:-cortex-a72}"
while [ $# -gt 0 ]; do
  case "$1" in
    --frames) [ $# -ge 2 ] || precondition "--frames needs a value"; FRAMES="$2"; shift 2 ;;
    --score-tol) [ $# -ge 2 ] || precondition "--score-tol needs a value"; SCORE_TOL="$2"; shift 2 ;;
    --clip-score-tol) [ $# -ge 2 ] || precondition "--clip-score-tol needs a value"; CLIP_SCORE_TOL="$2"; shift 2 ;;
    --onnx) [ $# -ge 2 ] || precondition "--onnx needs a value"; ONNX_MODEL="$2"; shift 2 ;;
    --no-onnx) DO_ONNX=0; shift ;;
    --output) [ $# -ge 2 ] || precondition "--output needs a value"; OUT_DIR="$2"; shift 2 ;;
    --preflight) PREFLIGHT=1; shift ;;
    --reuse-venv) REUSE_VENV=1; shift ;;
    --cpu) [ $# -ge 2 ] || precondition "--cpu needs a value"; CPU_MODEL="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) precondition "unknown argument '$1' (see --help)" ;;
  esac
done
[[ "$FRAMES" =~ ^[1-9][0-9]*$ ]] && [ "$FRAMES" -le 200 ] || precondition "--frames must be 1..200, got '$FRAMES'"
for tol in "$SCORE_TOL" "$CLIP_SCORE_TOL"; do
  [[ "$tol" =~ ^(0|1)?\.[0-9]+$|^[01]$ ]] || precondition "score tolerances must be numbers in [0, 1], got '$tol'"
done
# The emulated core (QEMU_CPU) and what its /proc/cpuinfo says: qemu's default ("max") has SVE, on which
# ONNX Runtime's fp32 kernels run ~10x slower under emulation than on the Pi's own NEON-only cores.
case "$CPU_MODEL" in
  cortex-a72) CPU_MIDR="0x0 0xd08 3"; CPU_FEATURES="fp asimd evtstrm crc32 cpuid" ;;   # Raspberry Pi 4
  cortex-a76) CPU_MIDR="0x4 0xd0b 1"   # Raspberry Pi 5
    CPU_FEATURES="fp asimd evtstrm crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" ;;
  *) precondition "--cpu must be cortex-a72 (Raspberry Pi 4) or cortex-a76 (Raspberry Pi 5), got '$CPU_MODEL'" ;;
esac
if [ -n "$ONNX_MODEL" ]; then
  [ -f "$ONNX_MODEL" ] || precondition "--onnx $ONNX_MODEL: no such file"
  [ -f "${ONNX_MODEL%.onnx}.json" ] || precondition "--onnx $ONNX_MODEL: its sidecar ${ONNX_MODEL%.onnx}.json is missing"
  ONNX_MODEL="$(realpath "$ONNX_MODEL")"
fi

ROOT="${SQUEEZEDET_ARM64_ROOT:-${HOME:-/root}/.cache/squeezedet/arm64-root}"
CACHE="$(dirname "$ROOT")"
SUITE="${SQUEEZEDET_ARM64_SUITE:-bookworm}"
HOST_VENV="${SQUEEZEDET_VENV:-$REPO_ROOT/.venv}"
HOST_PY="$HOST_VENV/bin/python"
DEBOOTSTRAP="${SQUEEZEDET_ARM64_DEBOOTSTRAP:-debootstrap}"
QEMU="${SQUEEZEDET_ARM64_QEMU:-qemu-aarch64-static}"
PINS=()
[ -n "${SQUEEZEDET_ARM64_PINS:-}" ] && read -r -a PINS <<< "$SQUEEZEDET_ARM64_PINS"

# -- preconditions ---------------------------------------------------------------------------------
MOSQUITTO="$(command -v mosquitto 2>/dev/null || echo /usr/sbin/mosquitto)"
can_apt() { [ "$(id -u)" = "0" ] && [ "${SQUEEZEDET_ARM64_NO_APT:-0}" != "1" ] && command -v apt-get >/dev/null 2>&1; }
have_tools() { command -v "$DEBOOTSTRAP" >/dev/null 2>&1 && command -v "$QEMU" >/dev/null 2>&1; }
if ! have_tools && can_apt; then
  log "installing debootstrap qemu-user-static binfmt-support (apt-get)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap qemu-user-static \
      binfmt-support; } >/dev/null 2>&1 || true
fi
have_tools || precondition "qemu-user-static and debootstrap are needed and could not be installed: apt-get install -y debootstrap qemu-user-static binfmt-support"
[ "$(id -u)" = "0" ] || precondition "must run as root (debootstrap, chroot and mount namespaces need it): sudo $0"
for tool in chroot unshare mount timeout; do
  command -v "$tool" >/dev/null 2>&1 || precondition "$tool not found (util-linux / coreutils)"
done
if [ ! -x "$MOSQUITTO" ] && can_apt; then
  log "installing mosquitto (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null 2>&1 || true
fi
[ -x "$MOSQUITTO" ] || precondition "mosquitto not found: apt-get install -y mosquitto"
[ -x "$HOST_PY" ] || precondition "host venv $HOST_VENV not found: run ./scripts/test.sh once (or set SQUEEZEDET_VENV)"
"$HOST_PY" -c "import paho.mqtt, yaml, cv2, pipeline, ai_edge_litert" 2>/dev/null \
  || precondition "host venv $HOST_VENV lacks the edge extra (paho-mqtt, PyYAML, OpenCV, ai-edge-litert): ./scripts/test.sh installs it"

# aarch64 binaries must reach qemu through binfmt_misc with the F flag (the interpreter is opened on the
# host, so nothing needs copying into the root, and processes that pip starts run too).
BINFMT=/proc/sys/fs/binfmt_misc
if [ ! -e "$BINFMT/status" ]; then mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null || true; fi
if [ ! -e "$BINFMT/qemu-aarch64" ] && command -v update-binfmts >/dev/null 2>&1; then
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
grep -qx enabled "$BINFMT/qemu-aarch64" 2>/dev/null \
  || precondition "no aarch64 handler in $BINFMT (mount binfmt_misc, then: update-binfmts --enable qemu-aarch64)"
grep -q '^flags:.*F' "$BINFMT/qemu-aarch64" \
  || precondition "the aarch64 binfmt handler lacks the F (fix binary) flag: install Debian's qemu-user-static"

# The Debian mirror this host's apt uses (deb822 .sources first, then one-line lists), else deb.debian.org.
host_mirror() {
  local m=""
  m="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ { for (i = 2; i <= NF; i++)
        if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }' || true)"
  [ -n "$m" ] || m="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1 == "deb" {
        for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }' || true)"
  echo "${m:-http://deb.debian.org/debian}"
}
MIRROR="${SQUEEZEDET_ARM64_MIRROR:-$(host_mirror)}"
QEMU_VERSION="$("$QEMU" --version 2>/dev/null | head -1 | sed 's/^qemu-aarch64 version //; s/ (.*//')"
log "preconditions met: root, $QEMU ($QEMU_VERSION) via binfmt_misc, $DEBOOTSTRAP, mosquitto, host venv $HOST_VENV"
if [ "$PREFLIGHT" = "1" ]; then
  log "preflight only: would use root $ROOT ($SUITE arm64 from $MIRROR), $FRAMES frames"
  exit 0
fi

# -- clean-up ----------------------------------------------------------------------------------------
WORK="$(mktemp -d /tmp/arm64_check.XXXXXX)"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT_DIR"
write_atomic() {  # write_atomic DEST < content
  local tmp
  tmp="$(mktemp "$(dirname "$1")/.$(basename "$1").XXXXXX")"
  cat > "$tmp"
  mv -f "$tmp" "$1"
}

# Run a command in the root: its own mount and PID namespaces, so /proc, /dev and /sys mounted there vanish
# with it and every process it started dies with it (unshare --kill-child); a clean environment (the host's
# PIP_* settings and /etc/pip.conf point at local wheel folders; inside, pip uses PyPI).
root_cmd() {  # root_cmd CMD...: sets ROOT_CMD to the command line that runs CMD in the root
  local envs=(HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
              PATH=/opt/squeezedet/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
              PIP_CONFIG_FILE=/dev/null PIP_INDEX_URL=https://pypi.org/simple PIP_DISABLE_PIP_VERSION_CHECK=1
              PIP_NO_INPUT=1 PIP_DEFAULT_TIMEOUT=120 PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt
              "QEMU_CPU=$CPU_MODEL")
  local v
  for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    if [ -n "${!v:-}" ]; then envs+=("$v=${!v}"); fi
  done
  ROOT_CMD=(unshare --mount --pid --fork --kill-child --propagation private -- /bin/sh -c '
    r="$1"; cpuinfo="$2"; shift 2
    mount -t proc proc "$r/proc" && mount --rbind /dev "$r/dev" && mount --rbind /sys "$r/sys" || exit 125
    if [ -n "$cpuinfo" ]; then mount --bind "$cpuinfo" "$r/proc/cpuinfo" || exit 125; fi
    exec chroot "$r" /bin/sh -c "cd /app 2>/dev/null; exec \"\$@\"" sh "$@"' sh "$ROOT" "$CPUINFO" /usr/bin/env -i "${envs[@]}" "$@")
}
# in_root CMD...: bounded by IN_ROOT_TIMEOUT seconds (unshare ignores SIGTERM while it waits: the SIGKILL
# that follows 10 s later ends it, and --kill-child the command with it).
IN_ROOT_TIMEOUT=300
in_root() { root_cmd "$@"; timeout -k 10 "$IN_ROOT_TIMEOUT" "${ROOT_CMD[@]}"; }
# qemu 7.2 (Debian bookworm) passes the host's x86 /proc/cpuinfo through; ONNX Runtime's CPU detection
# (cpuinfo) crashes on it at import. Where the root sees no ARM cpuinfo, it gets the emulated core's
# (one entry per host core). Instruction-set features come from qemu itself (QEMU_CPU, HWCAP).
CPUINFO=""
elapsed() {  # elapsed START_NS: seconds since, one decimal
  local ms=$(( ($(date +%s%N) - $1) / 1000000 ))
  printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}

# -- 1. the arm64 root ---------------------------------------------------------------------------------
STAMP="$ROOT/.squeezedet-arm64-root"
ROOT_NOTE=""
CPUINFO_NOTE=""
if [ -f "$STAMP" ]; then
  ROOT_NOTE="reused $ROOT ($(cat "$STAMP"))"
  log "arm64 root: $ROOT_NOTE"
else
  PARTIAL="$ROOT.partial"
  if [ -e "$PARTIAL" ]; then
    if grep -q " $PARTIAL" /proc/self/mounts; then fail "$PARTIAL has something mounted in it: unmount it first"; fi
    log "removing an unfinished root from an earlier run: $PARTIAL"
    rm -rf "$PARTIAL"
  fi
  mkdir -p "$CACHE"
  log "building the arm64 root: debootstrap --arch=arm64 --variant=minbase $SUITE $PARTIAL $MIRROR (minutes)"
  T0=$(date +%s)
  # In a private mount namespace: whatever debootstrap mounts in the target is gone when it ends.
  if ! unshare --mount --propagation private -- "$DEBOOTSTRAP" --arch=arm64 --variant=minbase \
      --include=python3,python3-venv,python3-pip "$SUITE" "$PARTIAL" "$MIRROR" > "$WORK/debootstrap.log" 2>&1; then
    cp "$WORK/debootstrap.log" "$OUT_DIR/debootstrap.log"
    fail "debootstrap of $SUITE arm64 from $MIRROR failed: $(grep -E '^[EW]:' "$WORK/debootstrap.log" | tail -1) (log: $OUT_DIR/debootstrap.log)"
  fi
  BUILD_S=$(( $(date +%s) - T0 ))
  printf '%s arm64 from %s, built %s in %s s' "$SUITE" "$MIRROR" "$(date -u +%Y-%m-%dT%H:%MZ)" "$BUILD_S" > "$PARTIAL/.squeezedet-arm64-root"
  if [ -e "$ROOT" ]; then
    if grep -q " $ROOT[ /]" /proc/self/mounts; then fail "$ROOT has something mounted in it: unmount it first"; fi
    rm -rf "$ROOT"
  fi
  mv "$PARTIAL" "$ROOT"
  ROOT_NOTE="built $ROOT ($(cat "$STAMP"))"
  log "arm64 root: $ROOT_NOTE"
fi
# The host's DNS settings and CA bundle: where registries are reached through a TLS-inspecting proxy, its
# CA is in the host's bundle only (pip in the root is pointed at this copy, PIP_CERT).
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
mkdir -p "$ROOT/etc/ssl/certs"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/host-ca-certificates.crt"
elif [ ! -f "$ROOT/etc/ssl/certs/host-ca-certificates.crt" ]; then
  cp -L "$ROOT/etc/ssl/certs/ca-certificates.crt" "$ROOT/etc/ssl/certs/host-ca-certificates.crt" 2>/dev/null || true
fi
ARCH_IN_ROOT="$(in_root uname -m 2>&1)" || fail "cannot run a command in the root $ROOT: $ARCH_IN_ROOT"
if ! in_root grep -q '^CPU implementer' /proc/cpuinfo; then
  for ((i = 0; i < $(nproc); i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$i" "$CPU_FEATURES"
    printf 'CPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' $CPU_MIDR
  done > "$WORK/cpuinfo"
  CPUINFO="$WORK/cpuinfo"
  CPUINFO_NOTE="; /proc/cpuinfo: a $CPU_MODEL's (qemu $QEMU_VERSION passes the host's x86 one through)"
  log "the root sees the host's x86 /proc/cpuinfo: giving it a $CPU_MODEL's ($(nproc) cores)"
fi
PY_IN_ROOT="$(in_root python3 -c 'import platform; print(platform.python_version())' 2>&1)" \
  || fail "python3 does not run in the root: $PY_IN_ROOT"
[ "$ARCH_IN_ROOT" = "aarch64" ] || fail "the root reports machine '$ARCH_IN_ROOT', not aarch64: is the qemu-aarch64 binfmt handler working?"
log "root runs: $(in_root uname -sm), Python $PY_IN_ROOT"

# -- 2. the edge install, as docker/Dockerfile.edge does it --------------------------------------------
# The files Dockerfile.edge copies (pyproject.toml README.md constraints.txt squeezedet pipeline) to /app,
# and what the daemon runs on (the bundled model and clip).
rm -rf "$ROOT/app"
if [ "$REUSE_VENV" = "1" ]; then
  [ -x "$ROOT/opt/squeezedet/venv/bin/squeezedet-edge" ] || precondition "--reuse-venv: no venv from an earlier run in $ROOT/opt/squeezedet"
else
  rm -rf "$ROOT/opt/squeezedet"
fi
mkdir -p "$ROOT/app/assets/models" "$ROOT/app/assets/demo" "$ROOT/app/onnx"
tar -C "$REPO_ROOT" --exclude=__pycache__ --exclude='*.egg-info' --exclude='*.pyc' \
  -cf - pyproject.toml README.md constraints.txt squeezedet pipeline | tar -C "$ROOT/app" -xf -
cp "$REPO_ROOT"/assets/models/squeezedet_kitti_int8.{tflite,json} "$ROOT/app/assets/models/"
cp "$REPO_ROOT/assets/demo/highway_dashcam.mp4" "$ROOT/app/assets/demo/"

pip_step() {  # pip_step LABEL LOGFILE pip-args...: run pip in the root's venv, one line on failure
  local label="$1" logfile="$2"; shift 2
  if ! IN_ROOT_TIMEOUT=1800 in_root /opt/squeezedet/venv/bin/pip install "$@" > "$logfile" 2>&1; then
    cp "$logfile" "$OUT_DIR/"
    local why
    why="$(grep -E '^ *ERROR: ' "$logfile" | tail -1 | sed 's/^ *//' || true)"
    fail "$label failed on aarch64 (Debian $SUITE, Python $PY_IN_ROOT): ${why:-$(tail -1 "$logfile")} (log: $OUT_DIR/$(basename "$logfile"))"
  fi
}

if [ "$REUSE_VENV" = "1" ]; then
  INSTALL_EDGE_S="not run (--reuse-venv)"
  log "--reuse-venv: using the venv of an earlier run (the install is not re-proved)"
else
  log "creating /opt/squeezedet/venv in the root (python3 -m venv)"
  T0=$(date +%s)
  in_root python3 -m venv /opt/squeezedet/venv > "$WORK/venv.log" 2>&1 \
    || fail "python3 -m venv failed in the root: $(tail -1 "$WORK/venv.log")"
  log "pip install \".[edge]\" -c constraints.txt ${PINS[*]:+${PINS[*]} }in the root (PyPI; the root's pip cache keeps the wheels)"
  pip_step "pip install \".[edge]\" -c constraints.txt${PINS[*]:+ ${PINS[*]}}" "$WORK/pip-edge.log" \
    ".[edge]" "${PINS[@]}" -c constraints.txt
  INSTALL_EDGE_S="$(( $(date +%s) - T0 )) s"
fi
EDGE_VERSIONS="$(in_root python -c 'import importlib.metadata as m; print(" ".join(f"{p}=={m.version(p)}" for p in ("ai-edge-litert", "opencv-python-headless", "numpy", "paho-mqtt")))')"
log "[edge] install: ${INSTALL_EDGE_S}: $EDGE_VERSIONS"
in_root squeezedet-edge --help > /dev/null 2>&1 || fail "squeezedet-edge does not start in the root"
# What the daemon imports must not pull TensorFlow onto the device.
if in_root python -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("tensorflow") else 1)'; then
  fail "the [edge] install brought TensorFlow into the root"
fi

# -- the ONNX model (host, TensorFlow) ----------------------------------------------------------------
ONNX_NOTE=""
WEIGHTS=""
if [ "$DO_ONNX" = "1" ] && [ -z "$ONNX_MODEL" ]; then
  # The bundled model's float weights: runs/reference/small_float32 (scripts/import_reference_model.sh), or
  # imported here from the authors' published files as that script does (../shared/data/reference_weights,
  # present in CI; 10 s), cached beside the root.
  WEIGHTS="$REPO_ROOT/runs/reference/small_float32/model.weights.h5"
  REF_WEIGHTS="$(dirname "$REPO_ROOT")/shared/data/reference_weights"
  HAVE_TF=1
  "$HOST_PY" -c "import tensorflow, tf2onnx, onnxruntime" >/dev/null 2>&1 || HAVE_TF=0
  if [ ! -f "$WEIGHTS" ] && [ "$HAVE_TF" = 1 ] && [ -d "$REF_WEIGHTS/forge_small_float32" ]; then
    WEIGHTS="$CACHE/reference_small_float32/model.weights.h5"
    if [ ! -f "$WEIGHTS" ]; then
      log "importing the authors' float32 weights ($REF_WEIGHTS) as scripts/import_reference_model.sh does"
      rm -rf "$CACHE/reference_small_float32.partial"
      (cd "$REPO_ROOT" && TF_CPP_MIN_LOG_LEVEL=2 "$HOST_VENV/bin/squeezedet" import "$REF_WEIGHTS/forge_small_float32" \
        --like "$REF_WEIGHTS/quant_small_sqdt.pb" --config configs/kitti_reference_small.yaml \
        --output "$CACHE/reference_small_float32.partial") > "$WORK/import.log" 2>&1 \
        || { cp "$WORK/import.log" "$OUT_DIR/"; fail "squeezedet import of $REF_WEIGHTS failed: $(tail -1 "$WORK/import.log") (log: $OUT_DIR/import.log)"; }
      mv "$CACHE/reference_small_float32.partial" "$CACHE/reference_small_float32"
    fi
  fi
  if [ ! -f "$WEIGHTS" ]; then
    DO_ONNX=0
    ONNX_NOTE="skipped: no runs/reference/small_float32 nor $REF_WEIGHTS to export an ONNX model from (or pass --onnx MODEL)"
  elif [ "$HAVE_TF" = 0 ]; then
    DO_ONNX=0; ONNX_NOTE="skipped: the host venv lacks tensorflow/tf2onnx/onnxruntime for the export (or pass --onnx MODEL)"
  else
    # keyed by the weights and the exporter's code: a changed exporter makes a new file
    KEY="$(cd "$REPO_ROOT" && cat "$WEIGHTS" squeezedet/export/*.py squeezedet/core/metadata.py | sha256sum | cut -c1-16)"
    ONNX_DIR="$CACHE/onnx/$KEY"
    ONNX_MODEL="$ONNX_DIR/squeezedet_kitti_fp32.onnx"
    if [ -f "$ONNX_MODEL" ] && [ -f "$ONNX_DIR/squeezedet_kitti_fp32.json" ]; then
      log "ONNX model: reusing $ONNX_MODEL (fp32 export of ${WEIGHTS#"$REPO_ROOT"/})"
    else
      log "exporting ${WEIGHTS#"$REPO_ROOT"/} to fp32 ONNX on the host (squeezedet export, TensorFlow)"
      mkdir -p "$CACHE/onnx"
      rm -rf "$ONNX_DIR.partial"
      mkdir -p "$ONNX_DIR.partial"
      if ! (cd "$REPO_ROOT" && TF_CPP_MIN_LOG_LEVEL=2 "$HOST_VENV/bin/squeezedet" export --weights "$WEIGHTS" \
          --format onnx --quantize fp32 --check-images 0 --output "$ONNX_DIR.partial/squeezedet_kitti_fp32.onnx") \
          > "$WORK/export.log" 2>&1; then
        cp "$WORK/export.log" "$OUT_DIR/"
        fail "squeezedet export --format onnx failed on the host: $(tail -1 "$WORK/export.log") (log: $OUT_DIR/export.log)"
      fi
      rm -rf "$ONNX_DIR"
      mv "$ONNX_DIR.partial" "$ONNX_DIR"
    fi
  fi
fi
INSTALL_ONNX_S=""
if [ "$DO_ONNX" = "1" ]; then
  cp "$ONNX_MODEL" "$ROOT/app/onnx/model.onnx"
  cp "${ONNX_MODEL%.onnx}.json" "$ROOT/app/onnx/model.json"
  if [ "$REUSE_VENV" = "1" ]; then
    INSTALL_ONNX_S="not run (--reuse-venv)"
  else
    log "pip install \".[edge,onnx]\" -c constraints.txt in the root (ONNX Runtime, CPU provider on aarch64)"
    T0=$(date +%s)
    pip_step "pip install \".[edge,onnx]\" -c constraints.txt" "$WORK/pip-onnx.log" \
      ".[edge,onnx]" "${PINS[@]}" -c constraints.txt
    INSTALL_ONNX_S="$(( $(date +%s) - T0 )) s"
  fi
  ORT_INFO="$(in_root python -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())' 2>&1)" \
    || fail "onnxruntime does not import in the root: $(tail -1 <<< "$ORT_INFO")"
  log "[edge,onnx] install: ${INSTALL_ONNX_S}: $ORT_INFO"
fi

# -- 3. broker, host runs and arm64 runs ---------------------------------------------------------------
PORT="$("$HOST_PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$PORT" > "$WORK/mosquitto.conf"
"$MOSQUITTO" -c "$WORK/mosquitto.conf" > "$WORK/mosquitto.log" 2>&1 &
PIDS+=($!)
broker_up() { "$HOST_PY" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null; }
for _ in $(seq 50); do broker_up && break; sleep 0.1; done
broker_up || fail "mosquitto did not start: $(tail -1 "$WORK/mosquitto.log")"
log "mosquitto listening on 127.0.0.1:$PORT (the root shares the host's network)"

HELPER="$REPO_ROOT/scripts/arm64_compare.py"
# Two inputs per back end. "frames": the first N frames decoded once on the host and resized there to the
# model's input size, saved as PNG (lossless): the daemon does not resize a frame of that size, so both sides
# hand the engine the same bytes and only the inference kernels can differ. "clip": the mp4 itself, decoded
# and resized on each side by its own OpenCV build; those differ between x86_64 and aarch64 (measured on
# this clip: FFmpeg's YUV->BGR conversion by up to 2 levels on 76% of pixels, INTER_LINEAR resize by 1 level
# on 19%), which is enough to move a detection that sits on the score or NMS threshold.
MODEL_W_H="$("$HOST_PY" -c 'import json, sys; m = json.load(open(sys.argv[1])); print(m["input_width"], m["input_height"])' \
  "$REPO_ROOT/assets/models/squeezedet_kitti_int8.json")"
if [ "$DO_ONNX" = "1" ]; then
  ONNX_W_H="$("$HOST_PY" -c 'import json, sys; m = json.load(open(sys.argv[1])); print(m["input_width"], m["input_height"])' \
    "${ONNX_MODEL%.onnx}.json")"
  [ "$ONNX_W_H" = "$MODEL_W_H" ] || fail "the ONNX model's input ($ONNX_W_H) differs from the .tflite's ($MODEL_W_H)"
fi
log "saving the first $FRAMES frames of the clip at the model's input size (${MODEL_W_H/ /x}) as PNG, decoded on the host"
mkdir -p "$ROOT/app/frames"
"$HOST_PY" - "$REPO_ROOT/assets/demo/highway_dashcam.mp4" "$ROOT/app/frames" "$FRAMES" $MODEL_W_H <<'PYFRAMES' \
  || fail "could not decode $FRAMES frames of the clip on the host"
import sys, cv2
clip, out, n, w, h = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cap = cv2.VideoCapture(clip)
for i in range(n):
    ok, frame = cap.read()
    if not ok:
        sys.exit(f"the clip has only {i} frames")
    cv2.imwrite(f"{out}/frame_{i:04d}.png", cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR))
PYFRAMES
read -r SCORE_THR NMS_THR < <("$HOST_PY" -c 'import sys, yaml; m = yaml.safe_load(open(sys.argv[1]))["model"]; print(m["score_threshold"], m["nms_threshold"])' "$REPO_ROOT/configs/edge_file.yaml")

RUN_TIMEOUT=$(( 300 + FRAMES * 60 ))
declare -A RUN_S
run_daemon() {  # run_daemon NAME WHERE(host|arm64) MODEL BACKEND INPUT(frames|clip)
  local name="$1" where="$2" model="$3" backend="$4" input="$5" prefix="arm64check-$1" cfg src base=""
  local -a launcher
  [ "$where" = "host" ] && base="$ROOT"
  if [ "$input" = "frames" ]; then src="$base/app/frames"; else src="$base/app/assets/demo/highway_dashcam.mp4"; fi
  if [ "$where" = "host" ]; then
    cfg="$WORK/$name.yaml"
    "$HOST_PY" "$HELPER" config --base "$REPO_ROOT/configs/edge_file.yaml" --out "$cfg" --model "$model" \
      --source "$src" --port "$PORT" --prefix "$prefix" --frames "$FRAMES" --backend "$backend"
    launcher=("$HOST_VENV/bin/squeezedet-edge" --config "$cfg")
  else
    cfg="/app/$name.yaml"
    "$HOST_PY" "$HELPER" config --base "$REPO_ROOT/configs/edge_file.yaml" --out "$ROOT$cfg" --model "$model" \
      --source "$src" --port "$PORT" --prefix "$prefix" --frames "$FRAMES" --backend "$backend"
    root_cmd squeezedet-edge --config "$cfg"
    launcher=("${ROOT_CMD[@]}")
  fi
  rm -f "$WORK/$name.ready"
  "$HOST_PY" "$HELPER" collect --port "$PORT" --prefix "$prefix" --out "$WORK/$name.json" \
    --timeout "$RUN_TIMEOUT" --ready-file "$WORK/$name.ready" 2> "$WORK/$name.collect.log" &
  local collector=$!
  PIDS+=("$collector")
  for _ in $(seq 100); do [ -f "$WORK/$name.ready" ] && break; sleep 0.1; done
  [ -f "$WORK/$name.ready" ] || fail "the MQTT collector for $name did not subscribe"
  log "$name: the daemon on $FRAMES frames ($where, $backend, ${model##*/}, $input)"
  local t0 rc=0
  t0=$(date +%s%N)
  timeout -k 10 "$RUN_TIMEOUT" "${launcher[@]}" --log-level WARNING > "$WORK/$name.log" 2>&1 || rc=$?
  RUN_S[$name]="$(elapsed "$t0")"
  if [ "$rc" != "0" ]; then
    cp "$WORK/$name.log" "$OUT_DIR/"
    fail "the daemon ($name) exited with status $rc$(case $rc in 124|137) echo " (timed out after $RUN_TIMEOUT s)" ;; esac): $(grep -v '^\s*$' "$WORK/$name.log" | tail -1) (log: $OUT_DIR/$name.log)"
  fi
  # The daemon has stopped and flushed its queue: the collector has its 'offline' or gets it within 15 s.
  local waited=0
  while kill -0 "$collector" 2>/dev/null && [ $waited -lt 150 ]; do sleep 0.1; waited=$((waited + 1)); done
  kill "$collector" 2>/dev/null || true
  wait "$collector" 2>/dev/null || true
  [ -f "$WORK/$name.json" ] || fail "no messages collected for $name: $(tail -1 "$WORK/$name.collect.log")"
  cp "$WORK/$name.json" "$OUT_DIR/.$name.json.tmp" && mv -f "$OUT_DIR/.$name.json.tmp" "$OUT_DIR/$name.json"
  log "$name: done in ${RUN_S[$name]} s"
}

BACKENDS=(litert)
declare -A MODEL_HOST=([litert]="$REPO_ROOT/assets/models/squeezedet_kitti_int8.tflite")
declare -A MODEL_ARM=([litert]=/app/assets/models/squeezedet_kitti_int8.tflite)
declare -A TITLE=([litert]="LiteRT, int8 .tflite")
if [ "$DO_ONNX" = "1" ]; then
  BACKENDS+=(onnxruntime)
  MODEL_HOST[onnxruntime]="$ONNX_MODEL"
  MODEL_ARM[onnxruntime]=/app/onnx/model.onnx
  TITLE[onnxruntime]="ONNX Runtime, fp32 .onnx, CPU provider"
fi
for be in "${BACKENDS[@]}"; do
  for input in frames clip; do
    run_daemon "host-$be-$input" host "${MODEL_HOST[$be]}" "$be" "$input"
    run_daemon "arm64-$be-$input" arm64 "${MODEL_ARM[$be]}" "$be" "$input"
  done
done

# -- 4. compare and report -----------------------------------------------------------------------------
STATUS=0
{
  echo "arm64 check: $(date -u +%Y-%m-%dT%H:%M:%SZ), host $(uname -m) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores)"
  echo "  arm64 root      : $ROOT_NOTE"
  echo "  emulation       : qemu-aarch64 $QEMU_VERSION (user mode, binfmt_misc), QEMU_CPU=$CPU_MODEL$CPUINFO_NOTE; root Python $PY_IN_ROOT"
  echo "  install [edge]  : ${INSTALL_EDGE_S}  (python3 -m venv + pip install \".[edge]\" -c constraints.txt${PINS[*]:+ ${PINS[*]}}; $EDGE_VERSIONS)"
  if [ "$DO_ONNX" = "1" ]; then
    echo "  install [onnx]  : ${INSTALL_ONNX_S}  (pip install \".[edge,onnx]\" -c constraints.txt; $ORT_INFO)"
    echo "  ONNX model      : ${ONNX_MODEL}${WEIGHTS:+ (fp32 export of ${WEIGHTS#"$REPO_ROOT"/})}"
  else
    echo "  ONNX Runtime    : ${ONNX_NOTE:-skipped (--no-onnx)}"
  fi
  echo "  frames          : $FRAMES of assets/demo/highway_dashcam.mp4 per run: as PNG at the model's ${MODEL_W_H/ /x}, decoded and"
  echo "                    resized on the host (same engine input), and as the clip decoded and resized on each side;"
  echo "                    the demo's config, every detection published (tracker min_hits 1)"
  printf '  daemon wall time:'
  for be in "${BACKENDS[@]}"; do for input in frames clip; do
    printf ' %s %s s / %s s,' "$be-$input" "${RUN_S[host-$be-$input]}" "${RUN_S[arm64-$be-$input]}"
  done; done
  echo " host / arm64 (emulated: no measure of a device's speed)"
} > "$WORK/report.txt"
for be in "${BACKENDS[@]}"; do
  echo >> "$WORK/report.txt"
  "$HOST_PY" "$HELPER" compare --name "${TITLE[$be]}, same engine input (PNG at model size)" --host "$WORK/host-$be-frames.json" \
    --arm "$WORK/arm64-$be-frames.json" --frames "$FRAMES" --iou "$IOU_MIN" --score-tol "$SCORE_TOL" \
    >> "$WORK/report.txt" || STATUS=1
  echo >> "$WORK/report.txt"
  "$HOST_PY" "$HELPER" compare --name "${TITLE[$be]}, clip decoded and resized on each side" --host "$WORK/host-$be-clip.json" \
    --arm "$WORK/arm64-$be-clip.json" --frames "$FRAMES" --iou "$IOU_MIN" --score-tol "$CLIP_SCORE_TOL" \
    --borderline --score-threshold "$SCORE_THR" --nms-threshold "$NMS_THR" >> "$WORK/report.txt" || STATUS=1
done
echo "  total: $(( $(date +%s) - START_S )) s" >> "$WORK/report.txt"
write_atomic "$OUT_DIR/report.txt" < "$WORK/report.txt"
cat "$WORK/report.txt"
if [ "$STATUS" != "0" ]; then
  fail "host and arm64 detections differ (tables above; $OUT_DIR/report.txt)"
fi
log "PASS: report in $OUT_DIR/report.txt"
