"""tf.distribute: one step mirrored over two (logical CPU) replicas updates the weights exactly as one
device does on the same global batch, and logs the same loss. Each mode runs in its own process
because TensorFlow's devices are fixed when it starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("distributed_step.py")


def one_step(out: Path, mode: str, learning_rate: float):
    out.mkdir(parents=True)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out), mode, str(learning_rate)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logged = json.loads(proc.stdout.strip().splitlines()[-1])
    weights = {}
    with h5py.File(out / "run" / "last.weights.h5") as f:
        f.visititems(lambda name, obj: weights.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return logged, weights


def test_mirrored_step_equals_one_device_step(tmp_path):
    single, w_single = one_step(tmp_path / "single", "none", 1e-3)
    mirrored, w_mirrored = one_step(tmp_path / "mirrored", "mirrored", 1e-3)
    _, w_start = one_step(tmp_path / "start", "none", 1e-12)  # the same initial weights, barely moved
    assert (single["replicas"], mirrored["replicas"]) == (1, 2)
    for key in ("loss", "class_loss", "conf_loss", "bbox_loss"):
        assert mirrored[key] == pytest.approx(single[key], rel=1e-5), key
    assert single["loss"] == pytest.approx(single["class_loss"] + single["conf_loss"] + single["bbox_loss"], rel=1e-5)
    assert set(w_single) == set(w_mirrored) == set(w_start)
    update = max(float(np.abs(w_single[k] - w_start[k]).max()) for k in w_single)
    mismatch = max(float(np.abs(w_single[k] - w_mirrored[k]).max()) for k in w_single)
    assert update > 1e-4  # the step moved the weights...
    assert mismatch < 1e-3 * update  # ...and both strategies moved them the same way
