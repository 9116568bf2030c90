"""scripts/arm64_check.sh (the emulated aarch64 install + daemon run) takes minutes and root, so it is a
documented slow check, not part of this suite. These tests cover what is cheap: its argument and
precondition checks (one line on stderr, exit status 2) and the comparison rules of scripts/arm64_compare.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SCRIPT = REPO / "scripts" / "arm64_check.sh"
HELPER = REPO / "scripts" / "arm64_compare.py"


def run_script(*args, **env):
    full_env = {**os.environ, "SQUEEZEDET_ARM64_NO_APT": "1", **env}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full_env, timeout=60)


@pytest.mark.parametrize("args, expected", [
    (["--frames", "x"], "--frames must be 1..200, got 'x'"),
    (["--frames", "0"], "--frames must be 1..200, got '0'"),
    (["--score-tol", "lots"], "score tolerances must be numbers in [0, 1], got 'lots'"),
    (["--cpu", "cortex-a53"], "--cpu must be cortex-a72 (Raspberry Pi 4) or cortex-a76 (Raspberry Pi 5)"),
    (["--onnx", "/nonexistent/model.onnx"], "--onnx /nonexistent/model.onnx: no such file"),
    (["--bogus"], "unknown argument '--bogus'"),
])
def test_bad_arguments_give_one_line_and_exit_2(args, expected):
    r = run_script(*args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("arm64_check: ") and expected in lines[0], r.stderr


def test_missing_qemu_or_debootstrap_gives_one_line_and_exit_2():
    r = run_script("--preflight", SQUEEZEDET_ARM64_DEBOOTSTRAP="/nonexistent/debootstrap",
                   SQUEEZEDET_ARM64_QEMU="/nonexistent/qemu-aarch64-static")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0] == ("arm64_check: qemu-user-static and debootstrap are needed and could not be installed: "
                        "apt-get install -y debootstrap qemu-user-static binfmt-support")


def test_help_names_the_options():
    r = run_script("--help")
    assert r.returncode == 0
    for option in ("--frames", "--score-tol", "--clip-score-tol", "--cpu", "--no-onnx", "--onnx", "--preflight", "--reuse-venv"):
        assert option in r.stdout


# -- the comparison ---------------------------------------------------------------------------------
def car(score, box):
    return {"label": "car", "score": score, "box": box}


def write_run(path: Path, frames: dict) -> Path:
    path.write_text(json.dumps({"complete": True, "frames": {str(k): v for k, v in frames.items()},
                                "last": {"stats": {"runtime": "test"}}}))
    return path


def compare(tmp_path, host, arm, *extra):
    h = write_run(tmp_path / "host.json", host)
    a = write_run(tmp_path / "arm.json", arm)
    return subprocess.run([sys.executable, str(HELPER), "compare", "--name", "t", "--host", str(h), "--arm", str(a),
                           "--frames", str(len(host)), "--score-tol", "0.05", *extra],
                          capture_output=True, text=True, timeout=60)


A, B, INNER = [100, 100, 200, 160], [300, 100, 420, 180], [140, 100, 200, 130]


def test_same_detections_within_tolerance_pass(tmp_path):
    r = compare(tmp_path, {0: [car(0.86, A), car(0.80, B)], 1: []},
                {0: [car(0.84, B), car(0.87, [101, 100, 200, 161])], 1: []})
    assert r.returncode == 0, r.stdout
    assert "PASS  2/2 frames agree" in r.stdout


@pytest.mark.parametrize("arm, reason", [
    ({0: [car(0.86, A)]}, "host only: car 0.800"),                        # a confident car lost
    ({0: [car(0.86, A), car(0.70, B)]}, "score off by > 0.05"),
    ({0: [car(0.86, A), car(0.80, [330, 100, 450, 180])]}, "IoU <= 0.9"),  # the box moved
    ({0: [car(0.86, A), {**car(0.80, B), "label": "van"}]}, "host only: car 0.800"),
])
def test_differences_fail(tmp_path, arm, reason):
    r = compare(tmp_path, {0: [car(0.86, A), car(0.80, B)]}, arm)
    assert r.returncode == 1, r.stdout
    assert reason in r.stdout


def test_borderline_detections_are_excused_only_when_asked(tmp_path):
    host = {0: [car(0.86, A), car(0.52, B)], 1: [car(0.86, A), car(0.70, INNER)]}
    arm = {0: [car(0.86, A)], 1: [car(0.86, A)]}
    # INNER's IoU with A is 0.3 exactly: on the NMS threshold; B's score 0.52 is 0.02 above the score threshold
    strict = compare(tmp_path, host, arm)
    assert strict.returncode == 1
    lenient = compare(tmp_path, host, arm, "--borderline", "--score-threshold", "0.5", "--nms-threshold", "0.3")
    assert lenient.returncode == 0, lenient.stdout
    assert "borderline: score 0.520 at threshold 0.5" in lenient.stdout
    assert "IoU 0.300 with a stronger box at NMS 0.3" in lenient.stdout
    # a confident, isolated car seen on one side only is never borderline
    lost = compare(tmp_path, {0: [car(0.86, A), car(0.75, B)]}, {0: [car(0.86, A)]}, "--borderline")
    assert lost.returncode == 1 and "host only: car 0.750" in lost.stdout


def test_a_missing_frame_fails(tmp_path):
    r = compare(tmp_path, {0: [car(0.86, A)], 1: []}, {0: [car(0.86, A)]})
    assert r.returncode == 1
    assert "no detections message from arm64" in r.stdout
