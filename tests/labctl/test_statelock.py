"""labctl.statelock: one changing run per state dir; the second waits (one line) or gives up (one line)."""

from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest

from labctl import statelock
from labctl.errors import LabError


def _held_elsewhere(directory, pid: str = "4242"):
    fd = os.open(directory / statelock.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{pid}\n".encode())
    return fd


def test_a_second_run_waits_for_the_first_then_proceeds(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_LOCK_WAIT", "10")
    other = _held_elsewhere(tmp_path)
    threading.Timer(0.5, os.close, [other]).start()
    said = []
    started = time.monotonic()
    statelock.hold(tmp_path, say=said.append)
    try:
        assert time.monotonic() - started >= 0.4
        assert said == [f"waiting for the other labctl run in {tmp_path} (pid 4242)"]
        assert (tmp_path / statelock.LOCK_FILE).read_text() == f"{os.getpid()}\n"
        statelock.hold(tmp_path, say=said.append)  # again in the same run (fab provision deploy-echo)
        assert len(said) == 1
    finally:
        statelock.release(tmp_path)


def test_a_second_run_gives_up_after_the_wait(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_LOCK_WAIT", "0.3")
    other = _held_elsewhere(tmp_path, "77")
    try:
        with pytest.raises(LabError, match=r"another labctl run \(pid 77\) still changes .* after 0 s"):
            statelock.hold(tmp_path, say=lambda line: None)
    finally:
        os.close(other)
    statelock.hold(tmp_path)  # free now: no waiting, no line
    statelock.release(tmp_path)


def test_a_bad_lab_lock_wait_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_LOCK_WAIT", "soon")
    with pytest.raises(LabError, match="LAB_LOCK_WAIT='soon' is not a number of seconds"):
        statelock.hold(tmp_path)
