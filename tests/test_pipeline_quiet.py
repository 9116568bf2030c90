"""An empty or corrupt video prints our one-line error on stderr and nothing else (FFmpeg, inside
OpenCV, would add its own "moov atom not found" line before it)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_helpers import edge_config, tiny_model_fixture, tiny_models_fixture, write_config  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("content", [b"", os.urandom(4000), b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200])
def test_bad_video_file_gives_only_our_line_on_stderr(tmp_path, tiny_model, content):
    video = tmp_path / "clip.mp4"
    video.write_bytes(content)
    path = write_config(tmp_path / "edge.yaml", edge_config(tiny_model, video))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    proc = subprocess.run([sys.executable, "-m", "pipeline", "--config", str(path)], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env=env, check=False)
    assert proc.returncode == 2
    assert proc.stderr == f"squeezedet-edge: error: {video}: cannot open file (unreadable, unsupported or busy)\n"
