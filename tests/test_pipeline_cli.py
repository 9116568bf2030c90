"""Config validation and the command line: one clear stderr line and exit 2 for every user error."""

import logging
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import yaml
from pipeline_helpers import (  # noqa: F401 - fixtures
    car_video_fixture,
    edge_config,
    tiny_model_fixture,
    tiny_models_fixture,
    write_config,
)

from pipeline.config import ENV_PASSWORD, load_edge_config
from pipeline.daemon import main
from squeezedet.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _drop_log_handlers():
    """main() installs a stdout log handler bound to capsys' stream; remove it after each test."""
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "squeezedet_edge", False)]:
        root.removeHandler(handler)


def run_main(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def config_file(tmp_path, model, video, **sections):
    return write_config(tmp_path / "edge.yaml", edge_config(model, video, **sections))


@pytest.mark.parametrize("section, values, expected", [
    ("mqtt", {"qso": 1}, "mqtt.qso: unknown key"),
    ("mqtt", {"tls": {"ca_cert": "x"}}, "mqtt.tls.ca_cert: unknown key"),
    ("tracker", {"smoothing": "mean"}, "tracker.smoothing: Input should be 'ema' or 'median'"),
    ("tracker", {"min_hits": 0}, "tracker.min_hits: Input should be greater than or equal to 1"),
    ("camera", {"name": "front/door"}, "camera.name: String should match pattern"),
])
def test_bad_config_names_the_key(tmp_path, capsys, tiny_model, car_video, section, values, expected):
    path = config_file(tmp_path, tiny_model, car_video, **{section: values})
    code, out, err = run_main(capsys, ["--config", str(path)])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"squeezedet-edge: error: {path}: {expected}")


def test_missing_required_section_and_bad_yaml(tmp_path, capsys):
    path = tmp_path / "edge.yaml"
    path.write_text("source:\n  uri: x.mp4\n")
    code, _, err = run_main(capsys, ["--config", str(path)])
    assert code == 2 and "model: Field required" in err and err.count("\n") == 1
    path.write_text("source: [unclosed\n")
    code, _, err = run_main(capsys, ["--config", str(path)])
    assert code == 2 and "invalid YAML" in err and err.count("\n") == 1
    code, _, err = run_main(capsys, ["--config", str(tmp_path / "none.yaml")])
    assert code == 2 and "config file not found" in err


@pytest.mark.parametrize("case", ["missing_model", "corrupt_model", "unreadable_video", "missing_video"])
def test_startup_errors_are_one_line_and_nonzero(tmp_path, capsys, tiny_model, car_video, case):
    model, video = tiny_model, car_video
    if case == "missing_model":
        model = tmp_path / "absent.tflite"
    elif case == "corrupt_model":
        model.write_bytes(b"\x00" * 100)
    elif case == "unreadable_video":
        video = tmp_path / "broken.mp4"
        video.write_bytes(b"this is not a video" * 50)
    else:
        video = tmp_path / "gone.mp4"
    code, _, err = run_main(capsys, ["--config", str(config_file(tmp_path, model, video))])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("squeezedet-edge: error: ")
    named = {"missing_model": "absent.tflite: model file not found", "corrupt_model": "model.json: model_sha256",
             "unreadable_video": "broken.mp4: cannot open file", "missing_video": "gone.mp4: video file not found"}
    assert named[case] in err


def test_password_from_env_or_file_wins_over_yaml(tmp_path, tiny_model, car_video):
    pw_file = tmp_path / "pw"
    pw_file.write_text("from-file\n")
    path = config_file(tmp_path, tiny_model, car_video,
                       mqtt={"username": "edge", "password": "in-yaml", "password_file": str(pw_file)})
    assert load_edge_config(path, env={}).mqtt.password == "from-file"
    assert load_edge_config(path, env={ENV_PASSWORD: "from-env"}).mqtt.password == "from-env"
    pw_file.unlink()
    with pytest.raises(ConfigError, match="mqtt.password_file: cannot read"):
        load_edge_config(path, env={})
    path = config_file(tmp_path, tiny_model, car_video, mqtt={"password": "x"})
    with pytest.raises(ConfigError, match="mqtt.username: required"):
        load_edge_config(path, env={})


def test_check_config(tmp_path, capsys, tiny_model, car_video):
    path = config_file(tmp_path, tiny_model, car_video)
    code, out, err = run_main(capsys, ["--config", str(path), "--check-config"])
    assert code == 0 and err == ""
    assert out.strip().endswith("OK (camera=test_cam source=file model=tiny_a input=128x64 classes=car,person mqtt=disabled)")


def test_runs_n_frames_of_a_file_and_writes_the_annotated_video(tmp_path, tiny_model, car_video):
    """No broker: ``python -m pipeline --max-frames 6`` processes 6 frames, exits 0, JSON logs."""
    out_video = tmp_path / "annotated.avi"
    path = config_file(tmp_path, tiny_model, car_video, run={"output_video": str(out_video)},
                       logging={"format": "json"})
    proc = subprocess.run([sys.executable, "-m", "pipeline", "--config", str(path), "--max-frames", "6"],
                          capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    records = [yaml.safe_load(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    stopped = [r for r in records if r["msg"] == "stopped"]
    assert stopped and stopped[0]["frames"] == 6 and stopped[0]["reason"] == "max_frames reached"
    cap = cv2.VideoCapture(str(out_video))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 6


def test_stop_at_end_of_a_non_looping_file(tmp_path, capsys, tiny_model, car_video):
    path = config_file(tmp_path, tiny_model, car_video, run={"max_frames": None, "stop_at_end": True})
    code, out, _ = run_main(capsys, ["--config", str(path)])
    assert code == 0
    assert 'msg=stopped reason="end of input" frames=20' in out


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("edge*.yaml")))
def test_example_configs_are_valid(name):
    env = {"RTSP_PASSWORD": "pa:ss", "SQUEEZEDET_MQTT_USERNAME": "edge", "SQUEEZEDET_MQTT_PASSWORD": "secret"}
    cfg = load_edge_config(REPO / "configs" / name, env=env)
    assert cfg.cameras and all("${" not in cam.source.uri for cam in cfg.cameras.values())


def test_stream_password_comes_from_the_environment(tmp_path, tiny_model):
    path = config_file(tmp_path, tiny_model, "rtsp://viewer:${RTSP_PASSWORD}@cam.local/stream1")
    assert load_edge_config(path, env={"RTSP_PASSWORD": "s3cret"}).source.uri == "rtsp://viewer:s3cret@cam.local/stream1"
    with pytest.raises(ConfigError, match="source.uri: environment variable RTSP_PASSWORD is not set"):
        load_edge_config(path, env={})


def test_missing_tls_certificate_is_a_one_line_error(tmp_path, capsys, tiny_model, car_video):
    ca = tmp_path / "missing-ca.crt"
    path = config_file(tmp_path, tiny_model, car_video, mqtt={"enabled": True, "tls": {"ca_certs": str(ca)}})
    code, _, err = run_main(capsys, ["--config", str(path)])
    assert code == 2 and err.count("\n") == 1
    assert err.endswith(f"mqtt.tls.ca_certs: {ca}: file not found\n")


def test_healthcheck_reads_the_heartbeat_age(tmp_path, capsys, tiny_model, car_video):
    import os
    import time

    health = tmp_path / "health"
    path = config_file(tmp_path, tiny_model, car_video, run={"health_file": str(health), "health_max_age_s": 30})
    code, _, err = run_main(capsys, ["--config", str(path), "--healthcheck"])
    assert code == 1 and "no heartbeat yet" in err
    code, _, _ = run_main(capsys, ["--config", str(path), "--max-frames", "3"])
    assert code == 0 and health.is_file()
    code, out, _ = run_main(capsys, ["--config", str(path), "--healthcheck"])
    assert code == 0 and "healthy" in out
    old = time.time() - 120
    os.utime(health, (old, old))
    code, _, err = run_main(capsys, ["--config", str(path), "--healthcheck"])
    assert code == 1 and "last frame 120 s ago (limit 30 s)" in err
