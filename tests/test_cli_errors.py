"""Bad input -> one line on stderr naming the file/line/key, exit code 2, nothing half-written."""

import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, SAMPLE_ROOT, make_sample_subset, stderr_line

from squeezedet.cli import main
from squeezedet.errors import ModelFileError


@pytest.fixture
def small_data(tmp_path):
    return make_sample_subset(tmp_path / "data", ["000003", "000008"])


def _cfg(tmp_path, data, **train):
    d = {"model": {"input_width": 128, "input_height": 64}, "data": {"root": str(data)},
         "train": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 1, "val_every": 0, **train}}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_bad_label_line_names_file_and_line(tmp_path, small_data, capsys):
    lab = small_data / "training" / "label_2" / "000008.txt"
    lines = lab.read_text().splitlines()
    lines[2] = "Car 0.00 0 -1.5 100 200 300"  # truncated line
    lab.write_text("\n".join(lines) + "\n")
    rc = main(["train", "--config", str(_cfg(tmp_path, small_data)), "--output", str(tmp_path / "out")])
    assert rc == 2
    err = stderr_line(capsys)
    assert f"{lab}:3: expected 15 fields, got 7" in err
    assert not (tmp_path / "out" / "last.weights.h5").exists()


def test_missing_image_is_named(tmp_path, small_data, capsys):
    (small_data / "training" / "image_2" / "000003.jpg").unlink()
    rc = main(["train", "--config", str(_cfg(tmp_path, small_data)), "--output", str(tmp_path / "out")])
    assert rc == 2
    assert "000003.{png,jpg,jpeg}: image not found" in stderr_line(capsys)


def test_unknown_class_in_label_file(tmp_path, small_data, capsys):
    lab = small_data / "training" / "label_2" / "000003.txt"
    lab.write_text(lab.read_text().replace("Car", "Bus", 1))
    rc = main(["train", "--config", str(_cfg(tmp_path, small_data)), "--output", str(tmp_path / "out")])
    assert rc == 2
    assert f"{lab}:1: unknown object type 'Bus'" in stderr_line(capsys)


def test_unknown_class_in_class_map(tmp_path, small_data, capsys):
    p = _cfg(tmp_path, small_data)
    d = yaml.safe_load(p.read_text())
    d["data"]["class_map"] = {"Car": "car", "Van": "vehicle"}
    p.write_text(yaml.safe_dump(d))
    assert main(["train", "--config", str(p)]) == 2
    assert "data.class_map maps to ['vehicle']" in stderr_line(capsys)


def test_bad_config_key_and_value_name_the_key_path(tmp_path, small_data, capsys):
    p = _cfg(tmp_path, small_data)
    d = yaml.safe_load(p.read_text())
    d["train"]["learning_rat"] = 0.1
    p.write_text(yaml.safe_dump(d))
    assert main(["train", "--config", str(p)]) == 2
    assert stderr_line(capsys) == f"squeezedet train: error: {p}: train.learning_rat: unknown key"
    d["train"].pop("learning_rat")
    d["model"]["padding"] = "full"
    p.write_text(yaml.safe_dump(d))
    assert main(["train", "--config", str(p)]) == 2
    assert f"{p}: model.padding: Input should be 'same' or 'valid'" in stderr_line(capsys)
    d["model"].update(padding="valid", architecture="squeezedet_plus", input_width=32)  # 7x7 conv1 leaves no grid
    p.write_text(yaml.safe_dump(d))
    assert main(["train", "--config", str(p)]) == 2
    assert f"{p}: model: Value error, input 32x64 is too small for valid padding" in stderr_line(capsys)
    p.write_text("model: [unclosed")
    assert main(["train", "--config", str(p)]) == 2
    assert "invalid YAML" in stderr_line(capsys)


def test_cli_subprocess_exit_code_and_single_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  nope: 1\n")
    r = subprocess.run([sys.executable, "-m", "squeezedet.cli", "train", "--config", str(p)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2
    assert r.stderr.strip() == f"squeezedet train: error: {p}: model.nope: unknown key"


def test_predict_missing_weights(tmp_path, capsys):
    rc = main(["predict", "--weights", str(tmp_path / "w.weights.h5"), "--config", str(REPO / "configs/kitti_sample.yaml"),
               "--source", str(SAMPLE_ROOT / "training/image_2/000003.jpg"), "--output", str(tmp_path / "o")])
    assert rc == 2
    assert "w.weights.h5: weights file not found" in stderr_line(capsys)


def test_bad_engine_option_is_one_line(tmp_path, capsys):
    from conftest import one_line_error

    msg = one_line_error(capsys, "predict", "--model", str(REPO / "assets/models/squeezedet_kitti_int8.tflite"),
                         "--source", str(SAMPLE_ROOT / "training/image_2/000003.jpg"), "--threads", "0",
                         "--output", str(tmp_path / "o"))
    assert msg.endswith("engine options: num_threads: Input should be greater than or equal to 1")
    assert not (tmp_path / "o").exists()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    from squeezedet.core.io import atomic_path

    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and oct(target.stat().st_mode & 0o777) != "0o600"
    shutil.rmtree(tmp_path)


def test_config_rules_across_keys(tmp_path, small_data, capsys):
    p = _cfg(tmp_path, small_data, prune_final_sparsity=0.5, prune_begin_step=2000, prune_end_step=1000)
    assert main(["train", "--config", str(p)]) == 2
    assert "prune_end_step (1000) must be greater than prune_begin_step (2000)" in stderr_line(capsys)
    d = yaml.safe_load(_cfg(tmp_path, small_data, val_every=1).read_text())
    d["model"]["classes"] = ["vehicle"]
    d["data"]["class_map"] = {"Car": "vehicle"}
    p.write_text(yaml.safe_dump(d))
    assert main(["train", "--config", str(p)]) == 2
    assert "model.classes ['vehicle'] are not KITTI types" in stderr_line(capsys)


def test_resume_of_a_finished_run_and_a_corrupt_state(tmp_path, small_data, capsys):
    import json

    out = tmp_path / "out"
    out.mkdir()
    (out / "state.json").write_text(json.dumps({"epoch": 3, "history": []}))
    cfg = str(_cfg(tmp_path, small_data))
    assert main(["train", "--config", cfg, "--output", str(out), "--resume", "--epochs", "2"]) == 2
    assert "already trained 3 epochs: pass --epochs greater than 3" in stderr_line(capsys)
    (out / "state.json").write_text("{not json")
    assert main(["train", "--config", cfg, "--output", str(out), "--resume"]) == 2
    assert "state.json: not a usable training state" in stderr_line(capsys)


def test_bad_sidecar_fields_are_model_file_errors(tmp_path):
    import json

    from squeezedet.core.metadata import read_metadata
    from squeezedet.errors import ModelFileError

    model = tmp_path / "m.tflite"
    model.write_bytes(b"\0\0\0\0TFL3")
    good = {"format": "squeezedet-tflite/1", "class_names": ["car"], "input_width": 64, "input_height": 32,
            "anchor_shapes": [[8, 8]]}
    (tmp_path / "m.json").write_text(json.dumps(good))
    assert read_metadata(model).anchor_shapes == [[8, 8]]
    for key, value, message in (("anchor_shapes", [[1, 2, 3]], "anchor_shapes: must be"),
                                ("input_width", "64", "input_width: must be a positive integer"),
                                ("class_names", [], "class_names: must be"),
                                ("nms_threshold", 4, "nms_threshold: must be a number in [0, 1]")):
        (tmp_path / "m.json").write_text(json.dumps({**good, key: value}))
        with pytest.raises(ModelFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
            read_metadata(model)


def test_sidecar_geometry_must_be_consistent(tmp_path):
    from squeezedet.core.metadata import read_metadata

    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    base = {"format": "squeezedet-tflite/1", "class_names": ["car"], "input_width": 1242, "input_height": 375,
            "anchor_shapes": [[36, 37]], "padding": "valid"}
    for extra, message in (
        ({"grid_width": 78, "grid_height": 24}, "grid 78x24 does not follow from input 1242x375 with valid padding (76x22)"),
        ({"grid_width": 76}, "grid_width and grid_height are given together or not at all"),
    ):
        (tmp_path / "m.json").write_text(json.dumps({**base, **extra}))
        with pytest.raises(ModelFileError, match=re.escape(message)):
            read_metadata(model, verify_hash=False)
    (tmp_path / "m.json").write_text(json.dumps(base))  # an old-style sidecar without grid: derived with its padding
    assert read_metadata(model, verify_hash=False).grid_size == (76, 22)


def test_config_and_sidecar_share_one_geometry_and_decode_defaults():
    """The training config and the sidecar are one geometry model: the same conv1 rule (7x7 in SqueezeDet+,
    which changes a VALID grid), the same anchors, the same decode defaults; and the sidecar's own
    messages still name the key at fault."""
    from squeezedet.config import ModelConfig, PostprocessConfig
    from squeezedet.core.geometry import DecodeDefaults, ModelGeometry
    from squeezedet.core.metadata import ModelMetadata

    cfg = ModelConfig(architecture="squeezedet_plus", input_width=100, input_height=64, padding="valid",
                      anchor_shapes=[(8, 8), (16, 8)])
    geometry = cfg.model_dump(include=set(ModelGeometry.model_fields))
    meta = ModelMetadata(class_names=["car"], **geometry)
    assert cfg.conv1_kernel == meta.conv1_kernel == 7
    assert cfg.grid_size == meta.grid_size == (5, 2)  # a 3x3 conv1 gives 5x3
    assert (cfg.anchors() == meta.anchors()).all()
    assert PostprocessConfig().model_dump() == DecodeDefaults().model_dump() == {
        k: getattr(meta, k) for k in DecodeDefaults.model_fields}
    with pytest.raises(ValueError, match="input_width: input 100x8 is too small for valid padding"):
        ModelMetadata(class_names=["car"], **{**geometry, "input_height": 8})
