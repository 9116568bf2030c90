"""Shared fixtures: the bundled real KITTI sample, and one tiny model trained on a handful of its images
(session-scoped: the overfit test, export tests and the end-to-end test all reuse it)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"
SAMPLE_ROOT = ASSETS / "kitti_sample"
PRETRAINED = ASSETS / "pretrained" / "squeezenet_v1.1_imagenet_notop.h5"
DEMO_CLIP = ASSETS / "demo" / "highway_dashcam.mp4"

#: Real sample images with cars and pedestrians of useful size, for the overfit model.
OVERFIT_IDS = ("000003", "000008", "000010", "000015")
TINY_INPUT = (384, 128)
TINY_STEPS = 300


@dataclass
class TinyTrained:
    config: object
    config_path: Path
    weights_path: Path
    data_root: Path
    first_loss: float
    final_loss: float
    output_dir: Path


def stderr_line(capsys) -> str:
    """What the command just wrote to stderr, which must be exactly one line (the one-line error rule)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def one_line_error(capsys, *argv) -> str:
    """Run the ``squeezedet`` CLI expecting a user error: exit 2 and exactly one line on stderr."""
    from squeezedet.cli import main

    rc = main(list(argv))
    assert rc == 2, capsys.readouterr().err
    return stderr_line(capsys)


def make_sample_subset(dest: Path, ids, val_ids=None) -> Path:
    """A KITTI-layout folder with only ``ids`` (copied from the bundled sample); val = ids unless given."""
    img_dir, lab_dir = dest / "training" / "image_2", dest / "training" / "label_2"
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)
    for i in set(ids) | set(val_ids or ()):
        shutil.copy(SAMPLE_ROOT / "training" / "image_2" / f"{i}.jpg", img_dir / f"{i}.jpg")
        shutil.copy(SAMPLE_ROOT / "training" / "label_2" / f"{i}.txt", lab_dir / f"{i}.txt")
    (dest / "train.txt").write_text("\n".join(ids) + "\n")
    (dest / "val.txt").write_text("\n".join(val_ids or ids) + "\n")
    return dest


def tiny_config_dict(data_root: Path) -> dict:
    from squeezedet.core.anchors import DEFAULT_KITTI_ANCHOR_SHAPES, scale_anchor_shapes

    anchors = scale_anchor_shapes(DEFAULT_KITTI_ANCHOR_SHAPES, (1248, 384), TINY_INPUT)
    return {
        "model": {
            "input_width": TINY_INPUT[0],
            "input_height": TINY_INPUT[1],
            "anchor_shapes": [[round(float(w), 2), round(float(h), 2)] for w, h in anchors],
            "dropout": 0.0,
            "pretrained_backbone": str(PRETRAINED),
        },
        "data": {"root": str(data_root)},
        "augment": {"enabled": False},
        "train": {
            "batch_size": 4,
            "epochs": 3,
            "steps_per_epoch": TINY_STEPS // 3,
            "learning_rate": 0.01,
            "warmup_steps": 20,
            "weight_decay": 0.0,
            "val_every": 0,
        },
        "postprocess": {"score_threshold": 0.3},
    }


@pytest.fixture(scope="session")
def sample_root() -> Path:
    return SAMPLE_ROOT


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory) -> TinyTrained:
    """SqueezeDet at 384x128 overfitted (300 steps) on 4 real KITTI images, pretrained backbone."""
    import yaml

    from squeezedet.config import load_config
    from squeezedet.train.trainer import train

    base = tmp_path_factory.mktemp("tiny_trained")
    data = make_sample_subset(base / "data", OVERFIT_IDS)
    cfg_path = base / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config_dict(data)))
    cfg = load_config(cfg_path)
    result = train(cfg, base / "run", verbose=0)
    return TinyTrained(
        config=cfg,
        config_path=cfg_path,
        weights_path=result.last_weights,
        data_root=data,
        first_loss=result.history[0]["loss"],
        final_loss=result.final_loss,
        output_dir=result.output_dir,
    )
