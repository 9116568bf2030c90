"""One training step of squeezedet.train.trainer.train: on one device, mirrored over two logical CPUs,
as one of two worker processes (MultiWorkerMirroredStrategy on loopback), or in mixed precision.

Run as a script (TensorFlow's devices, cluster and Keras' dtype policy are process-wide, so not inside
pytest):
    python tests/train_step_probe.py OUT_DIR none|mirrored|mixed[+distill] LEARNING_RATE
    python tests/train_step_probe.py OUT_DIR worker LEARNING_RATE INDEX PORT0,PORT1
"+distill" trains with a (random, seeded) teacher. Prints the step's logged metrics as JSON; the weights after the step are OUT_DIR/run/last.weights.h5
(for workers: the chief's, worker 0).
"""

import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if len(sys.argv) > 5:  # a worker: the cluster must be known before TensorFlow starts
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{port}" for port in sys.argv[5].split(",")]},
        "task": {"type": "worker", "index": int(sys.argv[4])},
    })
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from conftest import SAMPLE_ROOT, tiny_config_dict  # noqa: E402

IMAGES = ("000008", "000003")
#: Global-norm clipping, active on this first step (the raw gradient norm is far larger), so the test
#: also checks that replicas clip the global gradient, not each their own part.
CLIP_NORM = 0.5


def main(out: Path, mode: str, learning_rate: float) -> None:
    import keras

    import squeezedet.train.trainer as trainer
    from squeezedet.config import load_config
    from squeezedet.model import build_model
    from squeezedet.model.pretrained import load_pretrained_backbone

    mode, _, extra = mode.partition("+")

    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        trainer.select_strategy = lambda kind: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    # Two real images with 6 cars and 1 car: per-replica normalisers would differ from the global ones.
    data = out / "data"
    for sub in ("image_2", "label_2"):
        (data / "training" / sub).mkdir(parents=True, exist_ok=True)
    for name in IMAGES:
        shutil.copy(SAMPLE_ROOT / f"training/image_2/{name}.jpg", data / f"training/image_2/{name}.jpg")
        shutil.copy(SAMPLE_ROOT / f"training/label_2/{name}.txt", data / f"training/label_2/{name}.txt")
    (data / "train.txt").write_text("\n".join(IMAGES) + "\n")
    cfg_dict = tiny_config_dict(data)
    cfg_dict["train"].update({"batch_size": 2, "epochs": 1, "steps_per_epoch": 1, "warmup_steps": 0,
                              "lr_decay": "none", "momentum": 0.0, "weight_decay": 0.0, "clip_norm": CLIP_NORM,
                              "learning_rate": learning_rate,
                              "mixed_precision": "on" if mode == "mixed" else "off",
                              "distribution": "multi_worker" if mode == "worker" else "auto",
                              # teacher terms as large as the label loss, so their normalisers matter
                              "distill_weight": 50.0})
    (out / "config.yaml").write_text(yaml.safe_dump(cfg_dict))
    cfg = load_config(out / "config.yaml")
    teacher = None
    if extra == "distill":
        keras.utils.set_random_seed(123)  # the same teacher in every process
        teacher_model = build_model(cfg.model, training_dropout=False)
        load_pretrained_backbone(teacher_model, cfg.model.pretrained_backbone)
        head = teacher_model.get_layer("convdet")
        kernel, bias = head.get_weights()
        head.set_weights([kernel * 3000.0, bias])  # a new head outputs ~1e-3: give the teacher opinions
        teacher = out / "teacher.weights.h5"
        teacher_model.save_weights(str(teacher))
    result = trainer.train(cfg, out / "run", teacher_weights=teacher, verbose=0)
    print(json.dumps({"replicas": result.replicas, "precision": result.precision, "chief": result.chief,
                      "output_dir_exists": Path(result.output_dir).exists(), **result.history[-1]}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
