"""Building the C programs, the servers' command lines and signals, and Python 3.8 compatibility."""

from __future__ import annotations

import ast
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from tests.support.echo import (
    ECHO_DIR,
    KOREAN_LINES,
    SERVER_KINDS,
    WAIT_SECONDS,
    child_env,
    server_command,
    talk,
)

PYTHON_SCRIPTS = ("echo_server.py", "echo_client.py")
SOURCES = ("echo_server.c", "echo_client.c", "echo_server_poll.c", "Makefile")


def copy_sources(destination) -> None:
    for name in SOURCES:
        shutil.copy(ECHO_DIR / name, destination / name)


def make(directory, *targets: str) -> str:
    result = subprocess.run(["make", "-C", str(directory), *targets], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def built_files(directory) -> set[str]:
    return {path.name for path in directory.iterdir()} - set(SOURCES)


@pytest.mark.parametrize("program", ["echo_server", "echo_client", "echo_server_poll"])
def test_compiles_exactly_as_the_course_does(tmp_path, program):
    shutil.copy(ECHO_DIR / f"{program}.c", tmp_path)

    command = ["gcc", f"{program}.c", "-o", program]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)

    assert (result.returncode, result.stderr) == (0, "")
    assert (tmp_path / program).exists()


def test_make_builds_the_two_programs_incrementally_and_cleans_up(tmp_path):
    copy_sources(tmp_path)

    make(tmp_path)
    assert built_files(tmp_path) == {"echo_server", "echo_client"}
    assert "Nothing to be done" in make(tmp_path)

    (tmp_path / "echo_client.c").touch()
    rebuilt = make(tmp_path)
    assert "echo_client.c" in rebuilt and "echo_server.c" not in rebuilt

    make(tmp_path, "poll", "sanitize")
    assert built_files(tmp_path) == {
        "echo_server",
        "echo_client",
        "echo_server_poll",
        "echo_server_asan",
        "echo_client_asan",
        "echo_server_poll_asan",
    }
    make(tmp_path, "clean")
    assert built_files(tmp_path) == set()


def test_make_can_build_into_another_directory(tmp_path):
    sources, out = tmp_path / "src", tmp_path / "out"
    sources.mkdir()
    out.mkdir()
    copy_sources(sources)

    make(sources, f"OUT={out}")

    assert built_files(sources) == set()
    assert built_files(out) == {"echo_server", "echo_client"}


@pytest.mark.parametrize("server_kind", SERVER_KINDS)
def test_port_in_use_prints_the_bind_error(echo_build, free_port, server_kind):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", free_port))
        squatter.listen(1)
        result = subprocess.run(
            server_command(server_kind, echo_build, free_port),
            capture_output=True,
            timeout=WAIT_SECONDS,
            env=child_env(),
        )

    assert (result.returncode, result.stdout, result.stderr) == (1, b"ERROR :: 2_bind Error\n", b"")


@pytest.mark.parametrize("server_kind", SERVER_KINDS)
@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_bad_port_prints_usage_and_exits_2(echo_build, server_kind, port):
    command = server_command(server_kind, echo_build, 1)
    command[command.index("1")] = port
    result = subprocess.run(command, capture_output=True, timeout=WAIT_SECONDS, env=child_env())

    assert result.returncode == 2
    assert result.stdout == b""
    assert b"usage:" in result.stderr


@pytest.mark.parametrize("script", PYTHON_SCRIPTS)
def test_python_programs_have_help(script):
    command = [sys.executable, str(ECHO_DIR / script), "--help"]
    result = subprocess.run(command, capture_output=True, text=True)

    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: {script}")


@pytest.mark.parametrize("server_kind", ["py", "py_concurrent"])
def test_python_server_exits_cleanly_on_sigterm(start_server, echo_build, server_kind):
    server = start_server(server_kind)
    assert talk("py", echo_build, server.port, [b"up"]) == b"up\n"

    server.process.send_signal(signal.SIGTERM)

    assert server.process.wait(timeout=WAIT_SECONDS) == 0
    assert server.errors() == b""


@pytest.mark.parametrize("script", PYTHON_SCRIPTS)
def test_python_programs_parse_as_python_3_8(script):
    source = (ECHO_DIR / script).read_text()

    tree = ast.parse(source, filename=script, feature_version=(3, 8))

    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    stdlib = getattr(sys, "stdlib_module_names", None)  # Python 3.10+
    if stdlib is not None:
        assert imported <= set(stdlib), "standard library only"


@pytest.mark.parametrize("server_kind", ["py", "py_concurrent"])
def test_python_programs_run_on_python_3_8(start_server, echo_build, python38, server_kind):
    server = start_server(server_kind, python=python38)

    output = talk("py", echo_build, server.port, [*KOREAN_LINES, b"exit"], python=python38)

    assert output == KOREAN_LINES[0] + b"\n" + KOREAN_LINES[1] + b"\n"
    assert server.wait_for_messages(1) == ["INFO :: Client want close... BYE"]
    server.assert_healthy()
