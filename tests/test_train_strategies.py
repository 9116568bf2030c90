"""How a training step runs does not change what it learns: mirrored over two (logical CPU) replicas, or
split over two worker processes talking over loopback, it updates the weights exactly as one device does
on the same global batch; in mixed precision, as float32 does within float16 rounding. Each mode runs
in its own process (TensorFlow's devices, cluster and Keras' dtype policy are process-wide)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("train_step_probe.py")


def one_step(out: Path, mode: str, learning_rate: float):
    out.mkdir(parents=True)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out), mode, str(learning_rate)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), layer_weights(out)


def layer_weights(out: Path) -> dict:
    weights = {}  # the model's layers only (optimizer state differs by design, e.g. the loss scale)
    with h5py.File(out / "run" / "last.weights.h5") as f:
        f["layers"].visititems(
            lambda name, obj: weights.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    assert len(weights) >= 60  # conv1, fire2..fire11, convdet: kernels and biases
    return weights


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(logged, weights) of a float32 one-device step, and the initial weights (a step of lr 1e-12)."""
    base = tmp_path_factory.mktemp("reference")
    return one_step(base / "single", "none", 1e-3), one_step(base / "start", "none", 1e-12)[1]


def test_mirrored_step_equals_one_device_step(tmp_path, reference):
    (single, w_single), w_start = reference
    mirrored, w_mirrored = one_step(tmp_path / "mirrored", "mirrored", 1e-3)
    assert (single["replicas"], mirrored["replicas"]) == (1, 2)
    for key in ("loss", "class_loss", "conf_loss", "bbox_loss"):
        assert mirrored[key] == pytest.approx(single[key], rel=1e-5), key
    assert single["loss"] == pytest.approx(single["class_loss"] + single["conf_loss"] + single["bbox_loss"], rel=1e-5)
    assert set(w_single) == set(w_mirrored) == set(w_start)
    update = max(float(np.abs(w_single[k] - w_start[k]).max()) for k in w_single)
    mismatch = max(float(np.abs(w_single[k] - w_mirrored[k]).max()) for k in w_single)
    assert update > 1e-4  # the step moved the weights...
    assert mismatch < 1e-3 * update  # ...and both strategies moved them the same way


def test_mixed_precision_step_matches_float32(tmp_path, reference):
    (single, w_single), w_start = reference
    mixed, w_mixed = one_step(tmp_path / "mixed", "mixed", 1e-3)
    assert (single["precision"], mixed["precision"]) == ("float32", "mixed_float16")
    assert mixed["loss"] == pytest.approx(single["loss"], rel=1e-2)
    assert set(w_mixed) == set(w_single)
    assert all(w.dtype == np.float32 for w in w_mixed.values())  # float32 master weights are saved
    update = max(float(np.abs(w_single[k] - w_start[k]).max()) for k in w_single)
    mismatch = max(float(np.abs(w_single[k] - w_mixed[k]).max()) for k in w_single)
    assert mismatch < 0.05 * update  # the same step, up to float16 activations


def test_two_worker_processes_step_equals_one_device_step(tmp_path, reference):
    (single, w_single), w_start = reference
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(str(s.getsockname()[1]))
    procs = []
    for index in range(2):
        (tmp_path / f"w{index}").mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, str(SCRIPT), str(tmp_path / f"w{index}"), "worker", "1e-3", str(index), ",".join(ports)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        results = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    logs = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    assert [entry["replicas"] for entry in logs] == [2, 2]
    for entry in logs:  # both workers log the global-batch loss
        assert entry["loss"] == pytest.approx(single["loss"], rel=1e-5)
    assert not (tmp_path / "w1" / "run").exists()  # only the chief writes the run folder
    w_chief = layer_weights(tmp_path / "w0")
    update = max(float(np.abs(w_single[k] - w_start[k]).max()) for k in w_single)
    mismatch = max(float(np.abs(w_single[k] - w_chief[k]).max()) for k in w_single)
    assert mismatch < 1e-3 * update
