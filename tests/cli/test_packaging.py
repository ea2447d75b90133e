"""pyproject ships every package and the echo sources deploy-echo uploads (fast checks; the built wheel
itself is tested in test_installed.py)."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from lab import deploy

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
TOP_LEVEL = ["infra", "lab", "labcore", "labctl", "sandbox"]


def packages_on_disk() -> set[str]:
    """Every directory with an __init__.py under the top-level packages, as a dotted name."""
    return {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in TOP_LEVEL
        for init in (REPO / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }


def test_every_package_is_listed_in_pyproject():
    """A subpackage missing from `packages` would be missing from the wheel (an editable install hides it)."""
    listed = set(SETUPTOOLS["packages"])
    assert packages_on_disk() - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - packages_on_disk() == {"lab.echo"}


def test_the_wheel_ships_the_top_level_echo_folder_as_lab_echo():
    assert SETUPTOOLS["package-dir"] == {"lab.echo": "echo"}
    assert deploy.ECHO_DIR == REPO / "echo"  # in a checkout lab.deploy reads the folder itself


def test_package_data_covers_every_file_deploy_echo_uploads():
    patterns = SETUPTOOLS["package-data"]["lab.echo"]
    uploaded = deploy.local_sources(REPO / "echo")
    assert {"Makefile", "echo_server.c", "echo_client.c", "echo_server.py", "echo_client.py"} <= set(uploaded)
    assert [name for name in uploaded if not any(fnmatch.fnmatch(name, p) for p in patterns)] == []
