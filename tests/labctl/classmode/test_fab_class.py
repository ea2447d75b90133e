"""`fab provision --students/--count` option errors through the real fab: one line, exit 1, nothing made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[3]
FAB = Path(sys.executable).with_name("fab")


def fab(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(LAB_STATE_DIR=str(tmp_path / "state"), LAB_TARGET="sandbox")
    return subprocess.run(
        [str(FAB), *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--students", "{csv}"], "line 3: student id 'bad id' is not lab-name safe"),
        (["--count", "0"], "--count 0 is out of range"),
        (["--count", "3", "--students", "{csv}"], "--students and --count contradict each other"),
        (["--count", "3", "--parallel", "0"], "--parallel 0 is out of range"),
        (["--count", "2", "--name", "a-very-long-class-name-for-the-course-x"], "longer than 40 characters"),
    ],
)
def test_bad_class_options_fail_in_one_line(tmp_path, args, message):
    csv_file = tmp_path / "students.csv"
    csv_file.write_text("id\ngood\nbad id\n")
    done = fab(tmp_path, "provision", *[a.replace("{csv}", str(csv_file)) for a in args])
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "state" / "sandbox").exists()  # nothing was started


def test_help_lists_the_class_options(tmp_path):
    done = fab(tmp_path, "--help", "provision")
    for flag in ("--students", "--count", "--parallel", "--shared-sg", "--all"):
        assert flag in done.stdout
