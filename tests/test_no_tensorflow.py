"""The numpy core (and everything the edge daemon imports) must not pull in TensorFlow."""

import subprocess
import sys

from conftest import REPO

CHECK = """
import sys
import {modules}
loaded = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.") or m == "keras")
print(",".join(loaded))
"""


def _loaded_tf(modules):
    r = subprocess.run([sys.executable, "-c", CHECK.format(modules=", ".join(modules))],
                       capture_output=True, text=True, cwd=REPO, check=True)
    return r.stdout.strip()


def test_core_does_not_import_tensorflow():
    mods = ["squeezedet", "squeezedet.core", "squeezedet.core.postprocess", "squeezedet.core.kitti",
            "squeezedet.core.metadata", "squeezedet.core.geometry", "squeezedet.core.runtime", "squeezedet.core.preprocess",
            "squeezedet.core.annotate", "pipeline.watch", "squeezedet.core.kmeans_anchors", "squeezedet.config",
            "squeezedet.inference", "squeezedet.data.kitti_dataset", "squeezedet.eval.kitti_eval",
            "squeezedet.eval.validate", "squeezedet.cli"]
    assert _loaded_tf(mods) == ""


def test_runtime_loader_prefers_litert_without_tensorflow():
    code = ("import sys; from squeezedet.core.runtime import runtime_name; print(runtime_name()); "
            "print('tensorflow' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert r.stdout.split() == ["ai_edge_litert", "False"]
