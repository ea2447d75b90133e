"""The course's checks with real netcat-openbsd: `nc 127.0.0.1 PORT` as a client, `nc -l` as a server."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.echo import (
    KOREAN_LINES,
    PROGRAM_CLIENT_KINDS,
    SERVER_KINDS,
    WAIT_SECONDS,
    client_command,
    is_listening,
    run_client,
    wait_until,
)

pytestmark = pytest.mark.skipif(shutil.which("nc") is None, reason="netcat (nc) is not installed")


def run_nc(arguments: list[str], stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(["nc", *arguments], input=stdin, capture_output=True, timeout=WAIT_SECONDS)


@pytest.mark.parametrize("server_kind", SERVER_KINDS)
def test_nc_client_gets_the_echo_without_newline(start_server, server_kind):
    server = start_server(server_kind)

    # -N: shut down the sending side at end of input, so the server sees the disconnect and closes.
    result = run_nc(["-N", "127.0.0.1", str(server.port)], KOREAN_LINES[0] + b"\n")

    assert (result.returncode, result.stdout) == (0, KOREAN_LINES[0])
    assert server.wait_for_messages(1) == ["INFO :: Disconnect with client... BYE"]
    server.assert_healthy()


@pytest.mark.parametrize("server_kind", SERVER_KINDS)
def test_nc_client_sending_exit_is_disconnected(start_server, server_kind):
    server = start_server(server_kind)

    result = run_nc(["127.0.0.1", str(server.port)], b"exit\n")

    assert (result.returncode, result.stdout) == (0, b"")
    assert server.wait_for_messages(1) == ["INFO :: Client want close... BYE"]
    server.assert_healthy()


@pytest.mark.parametrize("client_kind", PROGRAM_CLIENT_KINDS)
def test_client_against_nc_listening(echo_build, free_port, client_kind):
    listener = subprocess.Popen(
        ["nc", "-l", "127.0.0.1", str(free_port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        listener.stdin.write(KOREAN_LINES[1])  # what "the server" types back
        listener.stdin.close()
        wait_until(lambda: is_listening(free_port) or listener.poll() is not None, "nc -l to listen")

        result = run_client(client_command(client_kind, echo_build, free_port), KOREAN_LINES[0] + b"\n")
        listener.wait(timeout=WAIT_SECONDS)
        heard, errors = listener.stdout.read(), listener.stderr.read()
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
        listener.stdout.close()
        listener.stderr.close()

    assert (result.returncode, result.stdout) == (0, KOREAN_LINES[1] + b"\n")
    assert (listener.returncode, heard, errors) == (0, KOREAN_LINES[0], b"")


def test_nc_exit_code_reflects_a_refused_connection(free_port):
    # Guards the tests above: nc really reports failure, so their exit status 0 means something.
    result = run_nc(["127.0.0.1", str(free_port)], b"")
    assert result.returncode != 0
