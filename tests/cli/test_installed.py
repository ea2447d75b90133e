"""A non-editable install: the wheel built from this checkout, installed into a fresh venv, works from a
directory outside the checkout (`labctl --list`, the echo sources found inside the installed package, and a
`labctl deploy-echo --dry-run` against a private sshd on 127.0.0.1 when root).

No index is contacted: the wheel is built with this venv's setuptools (--no-build-isolation) and installed
with --no-index --no-deps; the fresh venv sees this venv's dependencies through one .pth line, after its own
site-packages, so labctl itself can only come from the installed wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import deploy

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NOT_SHIPPED = (
    ".git",
    ".venv",
    ".lab",
    "tests",
    "benchmarks",
    "build",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
)


@dataclass(frozen=True)
class Installed:
    venv: Path
    wheel: Path
    cwd: Path  # outside the checkout

    def run(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAB_", "PYTHON"))}
        clean.update(LAB_STATE_DIR=str(self.cwd / "state"), LAB_TARGET="sandbox", **(env or {}))
        return subprocess.run(
            [str(self.venv / "bin" / args[0]), *args[1:]],
            cwd=self.cwd,
            env=clean,
            capture_output=True,
            text=True,
            timeout=120,
        )


def pip(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    source = root / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SHIPPED))
    pip(
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--wheel-dir",
        str(root / "wheels"),
        str(source),
    )
    (wheel,) = (root / "wheels").glob("labctl-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    pip("--python", str(python), "install", "--no-index", "--no-deps", str(wheel))
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "labctl-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    cwd = root / "elsewhere"
    cwd.mkdir()
    return Installed(venv, wheel, cwd)


def test_the_wheel_holds_the_packages_and_the_echo_sources(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert {
        "labctl/tasks.py",
        "labctl/cli.py",
        "lab/deploy.py",
        "infra/__init__.py",
        "sandbox/__init__.py",
    } <= names
    shipped = {name.split("/", 2)[2] for name in names if name.startswith("lab/echo/")}
    assert shipped == set(deploy.local_sources(REPO / "echo"))
    assert not any(name.startswith(("tests/", "echo/")) or name == "fabfile.py" for name in names)


def test_installed_labctl_lists_its_tasks_from_outside_the_checkout(installed):
    done = installed.run("labctl", "--list")
    assert done.returncode == 0, done.stderr
    listed = [
        line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ") and line[2] != " "
    ]
    assert listed == [
        "deploy-echo",
        "forget-host-keys",
        "plan",
        "provision",
        "ssh",
        "status",
        "teardown",
        "verify",
    ]
    version = installed.run("labctl", "--version")
    assert version.stdout.startswith("labctl 0.1.0"), version.stdout + version.stderr


def test_installed_labctl_finds_the_echo_sources_in_the_installed_package(installed):
    script = (
        "import labctl, lab.deploy; print(labctl.__file__); print(lab.deploy.ECHO_DIR); "
        "print(sorted(lab.deploy.local_sources()))"
    )
    done = installed.run("python", "-c", script)
    assert done.returncode == 0, done.stderr
    package_file, echo_dir, names = done.stdout.splitlines()
    assert Path(package_file).is_relative_to(installed.venv)
    assert Path(echo_dir).is_relative_to(installed.venv) and Path(echo_dir).name == "echo"
    assert names == str(sorted(deploy.local_sources(REPO / "echo")))


@pytest.mark.root
def test_installed_labctl_deploy_echo_dry_run_on_a_byo_host(installed, sshd):
    done = installed.run(
        "labctl",
        "-H",
        f"root@127.0.0.1:{sshd.port}",
        "-i",
        sshd.client_key,
        "deploy-echo",
        "--dry-run",
        "--trust-new-host",
        "--json",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout[done.stdout.index("{") :])
    assert (report["ok"], report["errors"]) == (True, {})
    (upload,) = [result for result in report["results"] if result["step"] == "upload"]
    sources = deploy.local_sources(REPO / "echo")  # the installed copy must offer exactly these
    assert upload["detail"] in (", ".join(sources), f"{len(sources)} files up to date"), upload
