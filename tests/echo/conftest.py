"""Fixtures for the echo programs: one build per session, servers started per test and killed by PID."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.echo import (
    ECHO_DIR,
    SERVER_KINDS,
    EchoServer,
    find_python38,
    server_command,
)


@pytest.fixture(scope="session")
def echo_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """echo/ copied to a temporary directory and built there with `make`, `make poll` and `make sanitize`."""
    build = tmp_path_factory.mktemp("echo-build")
    for name in ("echo_server.c", "echo_client.c", "echo_server_poll.c", "Makefile"):
        shutil.copy(ECHO_DIR / name, build / name)
    for target in ("all", "poll", "sanitize"):
        result = subprocess.run(["make", "-C", str(build), target], capture_output=True, text=True)
        assert result.returncode == 0, f"make {target} failed:\n{result.stdout}{result.stderr}"
    return build


@pytest.fixture
def start_server(echo_build: Path, tmp_path: Path, free_port: int):
    """Factory: start_server(kind) -> a running EchoServer on a free port; all are stopped at teardown."""
    started: list[EchoServer] = []

    def start(
        kind: str, port: int = free_port, python: str = sys.executable, max_open_files: int | None = None
    ) -> EchoServer:
        assert kind in SERVER_KINDS
        log_dir = tmp_path / f"server-{len(started)}-{kind}"
        server = EchoServer(server_command(kind, echo_build, port, python), port, log_dir, max_open_files)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def python38() -> str:
    """A Python 3.8 interpreter (Ubuntu 20.04's version), or skip."""
    python = find_python38()
    if python is None:
        pytest.skip("no Python 3.8 interpreter on this machine")
    return python
