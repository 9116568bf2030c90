"""How a training step runs does not change what it learns: mirrored over two (logical CPU) replicas, or
split over two worker processes talking over loopback, it updates the weights as one device does on the
same global batch (to float32 summation order: 1e-3 of the update), with global-norm clipping active,
with and without a distillation teacher;
in mixed precision, as float32 does within float16 rounding. Each mode runs in its own process
(TensorFlow's devices, cluster and Keras' dtype policy are process-wide)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("train_step_probe.py")
LR = 0.01
CLIP_NORM = 0.5  # as in train_step_probe.py


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
    return one_step(base / "single", "none", LR), one_step(base / "start", "none", 1e-12)[1]


def max_abs_diff(a: dict, b: dict) -> float:
    """Largest element-wise difference between two sets of layer weights."""
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def update_norm(weights: dict, start: dict) -> float:
    """Global L2 norm of a step's change: lr x clip_norm when clipping was active (SGD, no momentum)."""
    return float(np.sqrt(sum(np.sum((weights[k].astype(np.float64) - start[k]) ** 2) for k in weights)))


def test_mirrored_step_equals_one_device_step(tmp_path, reference):
    (single, w_single), w_start = reference
    mirrored, w_mirrored = one_step(tmp_path / "mirrored", "mirrored", LR)
    assert (single["replicas"], mirrored["replicas"]) == (1, 2)
    for key in ("loss", "class_loss", "conf_loss", "bbox_loss"):
        assert mirrored[key] == pytest.approx(single[key], rel=1e-5), key
    assert single["loss"] == pytest.approx(single["class_loss"] + single["conf_loss"] + single["bbox_loss"], rel=1e-5)
    assert set(w_single) == set(w_mirrored) == set(w_start)
    update = max_abs_diff(w_single, w_start)
    mismatch = max_abs_diff(w_single, w_mirrored)
    assert update > 1e-4  # the step moved the weights...
    assert mismatch < 1e-3 * update  # ...and both strategies moved them the same way
    # clipping was active and clipped the global gradient (per-replica clipping gives up to 2x)
    assert update_norm(w_single, w_start) == pytest.approx(LR * CLIP_NORM, rel=1e-3)
    assert update_norm(w_mirrored, w_start) == pytest.approx(LR * CLIP_NORM, rel=1e-3)


def test_mirrored_distillation_step_equals_one_device_step(tmp_path, reference):
    _, w_start = reference  # train() seeds the student the same way with or without a teacher
    single, w_single = one_step(tmp_path / "single", "none+distill", LR)
    mirrored, w_mirrored = one_step(tmp_path / "mirrored", "mirrored+distill", LR)
    assert (single["replicas"], mirrored["replicas"]) == (1, 2)
    assert single["distill_loss"] > 0.1  # the teacher terms are active
    for key in ("loss", "gt_loss", "distill_loss"):
        assert mirrored[key] == pytest.approx(single[key], rel=1e-5), key
    update = max_abs_diff(w_single, w_start)
    mismatch = max_abs_diff(w_single, w_mirrored)
    assert update > 1e-4 and mismatch < 1e-3 * update
    assert update_norm(w_mirrored, w_start) == pytest.approx(LR * CLIP_NORM, rel=1e-3)


def test_mixed_precision_step_matches_float32(tmp_path, reference):
    (single, w_single), w_start = reference
    mixed, w_mixed = one_step(tmp_path / "mixed", "mixed", LR)
    assert (single["precision"], mixed["precision"]) == ("float32", "mixed_float16")
    assert mixed["loss"] == pytest.approx(single["loss"], rel=1e-2)
    assert set(w_mixed) == set(w_single)
    assert all(w.dtype == np.float32 for w in w_mixed.values())  # float32 master weights are saved
    update = max_abs_diff(w_single, w_start)
    mismatch = max_abs_diff(w_single, w_mixed)
    assert mismatch < 0.05 * update  # the same step, up to float16 activations


def test_two_worker_processes_step_equals_one_device_step(tmp_path, reference):
    (single, w_single), w_start = reference
    ports = []
    for _ in range(2):  # free now; a clash with another process before the workers bind is unlikely
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(str(s.getsockname()[1]))
    procs, logs = [], []
    for index in range(2):
        folder = tmp_path / f"w{index}"
        folder.mkdir()
        out, err = (folder / "stdout.txt").open("w"), (folder / "stderr.txt").open("w")
        logs.append((out, err))
        procs.append(subprocess.Popen(
            [sys.executable, str(SCRIPT), str(folder), "worker", str(LR), str(index), ",".join(ports)],
            stdout=out, stderr=err, text=True))
    deadline = time.monotonic() + 300
    try:
        # poll both: a worker that dies leaves the other waiting in a collective, so stop at once
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for out, err in logs:
            out.close()
            err.close()
    for index, p in enumerate(procs):
        assert p.returncode == 0, (tmp_path / f"w{index}" / "stderr.txt").read_text()[-3000:]
    results = [json.loads((tmp_path / f"w{i}" / "stdout.txt").read_text().strip().splitlines()[-1]) for i in range(2)]
    assert [r["replicas"] for r in results] == [2, 2]
    assert [r["chief"] for r in results] == [True, False]
    assert [r["output_dir_exists"] for r in results] == [True, False]  # the other worker's scratch is removed
    for entry in results:  # both workers log the global-batch loss
        assert entry["loss"] == pytest.approx(single["loss"], rel=1e-5)
    assert not (tmp_path / "w1" / "run").exists()  # only the chief writes the run folder
    w_chief = layer_weights(tmp_path / "w0")
    update = max_abs_diff(w_single, w_start)
    mismatch = max_abs_diff(w_single, w_chief)
    assert mismatch < 1e-3 * update
    assert update_norm(w_chief, w_start) == pytest.approx(LR * CLIP_NORM, rel=1e-3)
