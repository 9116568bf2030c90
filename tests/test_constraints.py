"""constraints.txt is the tested set: exact pins that satisfy pyproject's ranges, installed by the scripts,
CI and the Docker images, and (unless the suite runs on the newest releases) what this environment has."""

import os
import re
from importlib import metadata

import pytest
import tomllib
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version


def _pins() -> dict[str, str]:
    pins = {}
    for n, line in enumerate((REPO / "constraints.txt").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)", line.strip())
        assert m, f"constraints.txt:{n}: not an exact pin: {line!r}"
        pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def test_every_dependency_is_pinned_within_its_range():
    pins = _pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is a dependency but has no pin in constraints.txt"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), f"{req.name}=={pins[name]} not in {req}"


def test_scripts_and_images_install_the_tested_set():
    assert '-c "$REPO_ROOT/constraints.txt"' in (REPO / "scripts" / "_env.sh").read_text()
    for name in ("Dockerfile.edge", "Dockerfile.train"):
        text = (REPO / "docker" / name).read_text()
        assert "constraints.txt ./" in text and "-c constraints.txt" in text, name


@pytest.mark.skipif(os.environ.get("SQUEEZEDET_CONSTRAINTS") == "none", reason="running on the newest releases")
def test_this_environment_is_the_tested_set():
    pins = _pins()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    off = {n: (installed[n], v) for n, v in pins.items() if n in installed and installed[n] != v}
    assert not off, f"installed (have, pinned) differ from constraints.txt: {off}"
