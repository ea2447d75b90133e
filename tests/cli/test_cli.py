"""The `labctl` program (labctl.cli): the same tasks, flags and one-line errors as `fab`, no fabfile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAB = Path(sys.executable).with_name("fab")
LABCTL = Path(sys.executable).with_name("labctl")
TASKS = ["deploy-echo", "forget-host-keys", "plan", "provision", "ssh", "status", "teardown", "verify"]


def run(command: list[str], cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAB_"))}
    env.update(LAB_STATE_DIR=str(tmp_path / "state"), LAB_TARGET="sandbox")
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def task_lines(listing: str) -> list[str]:
    """The indented lines of a --list output (the heading differs: fab's tasks, labctl's subcommands)."""
    return [line for line in listing.splitlines() if line.startswith("  ")]


def task_names(listing: str) -> list[str]:
    """The task names of a --list output (a long summary continues on lines indented further)."""
    return [line.split()[0] for line in task_lines(listing) if not line.startswith("   ")]


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A directory outside the checkout whose fabfile.py would fail if anything loaded it."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    (cwd / "fabfile.py").write_text("raise SystemExit('this fabfile must not be read')\n")
    return cwd


def test_console_script_is_installed():
    assert LABCTL.exists(), "pip install -e . puts the labctl console script next to fab"


def test_labctl_lists_the_same_tasks_as_fab_without_reading_a_fabfile(tmp_path, elsewhere):
    fab = run([str(FAB), "--list"], REPO, tmp_path)
    labctl = run([str(LABCTL), "--list"], elsewhere, tmp_path)
    assert fab.returncode == 0 and labctl.returncode == 0, fab.stderr + labctl.stderr
    assert task_names(fab.stdout) == TASKS
    assert task_lines(labctl.stdout) == task_lines(fab.stdout)


@pytest.mark.parametrize("task", TASKS)
def test_labctl_task_help_is_fabs(tmp_path, elsewhere, task):
    fab = run([str(FAB), "--help", task], REPO, tmp_path)
    labctl = run([str(LABCTL), "--help", task], elsewhere, tmp_path)
    assert fab.returncode == 0 and labctl.returncode == 0, fab.stderr + labctl.stderr
    assert labctl.stdout.replace("Usage: labctl ", "Usage: fab ", 1) == fab.stdout
    assert "--" in fab.stdout  # the flags are there, not an empty help


def test_labctl_takes_fabs_ssh_flags(tmp_path, elsewhere):
    done = run([str(LABCTL), "--help"], elsewhere, tmp_path)
    assert done.returncode == 0, done.stderr
    for flag in ("--hosts", "--identity", "--ssh-config", "--connect-timeout", "--list"):
        assert flag in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["provision", "--count", "0"], "error: --count 0 is out of range: give 1 to"),
        (["provision", "--auto-stop", "soon"], "error: --auto-stop 'soon' is not a number of hours"),
    ],
)
def test_labctl_errors_are_one_line_and_exit_1(tmp_path, elsewhere, args, message):
    done = run([str(LABCTL), *args], elsewhere, tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "state" / "sandbox").exists()  # nothing was started


def test_python_dash_m_runs_the_same_program(tmp_path, elsewhere):
    done = run([sys.executable, "-m", "labctl.cli", "--list"], elsewhere, tmp_path)
    assert done.returncode == 0, done.stderr
    assert task_names(done.stdout) == TASKS


RUN_LABCTL = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "labctl"
from labctl.cli import main
main()
"""


def test_labctl_list_stays_light_and_loads_no_fabfile(tmp_path, elsewhere):
    out = tmp_path / "modules.json"
    done = run([sys.executable, "-c", RUN_LABCTL, str(out), "--list"], elsewhere, tmp_path)
    assert done.returncode == 0, done.stderr
    modules = set(json.loads(out.read_text()))
    assert "labctl.tasks" in modules
    assert (
        not {"fabfile", "botocore", "boto3", "labctl.single.provisioning", "labctl.classmode.classroom"}
        & modules
    )
