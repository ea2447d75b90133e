"""The client programs against a fake server: a plain listening socket in the test, like `nc -l`."""

from __future__ import annotations

import socket
import struct
import subprocess

import pytest

from tests.support.echo import (
    PROGRAM_CLIENT_KINDS,
    WAIT_SECONDS,
    child_env,
    client_command,
    receive_exactly,
    run_client,
)

pytestmark = pytest.mark.parametrize("client_kind", PROGRAM_CLIENT_KINDS)


@pytest.fixture
def fake_server():
    """A listening socket on 127.0.0.1 (port chosen by the kernel)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(WAIT_SECONDS)
        yield listener


@pytest.fixture
def start_client(echo_build):
    """Factory: start_client(kind, port, stdin) -> a running client process; killed by PID at teardown."""
    processes: list[subprocess.Popen] = []

    def start(kind: str, port: int, stdin: bytes) -> subprocess.Popen:
        process = subprocess.Popen(
            client_command(kind, echo_build, port),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
        )
        processes.append(process)
        process.stdin.write(stdin)
        process.stdin.close()
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def finish(process: subprocess.Popen) -> tuple[int, bytes]:
    """Wait for the client; its stderr must be empty. Returns (exit status, stdout)."""
    process.wait(timeout=WAIT_SECONDS)
    stdout, stderr = process.stdout.read(), process.stderr.read()
    assert stderr == b"", stderr.decode(errors="replace")
    return process.returncode, stdout


def test_sends_stripped_lines_and_prints_each_reply_on_its_own_line(fake_server, start_client, client_kind):
    stdin = "안녕 싸피\r\n\n\nsecond\nexit\n".encode()
    client = start_client(client_kind, fake_server.getsockname()[1], stdin)
    peer, _ = fake_server.accept()
    with peer:
        assert receive_exactly(peer, len("안녕 싸피".encode())) == "안녕 싸피".encode()
        peer.sendall(b"REPLY-1")
        assert receive_exactly(peer, 6) == b"second"
        peer.sendall(b"REPLY-2")
        assert receive_exactly(peer, 4) == b"exit"
        assert peer.recv(1) == b"", "the client closes after sending exit"

    assert finish(client) == (0, b"REPLY-1\nREPLY-2\n")


def test_server_closing_prints_server_disconnected(fake_server, start_client, client_kind):
    client = start_client(client_kind, fake_server.getsockname()[1], b"hello\nnever sent\n")
    peer, _ = fake_server.accept()
    with peer:
        assert receive_exactly(peer, 5) == b"hello"

    assert finish(client) == (0, b"INFO :: Server Disconnected\n")


def test_server_resetting_the_connection_prints_server_disconnected_and_exits_1(
    fake_server, start_client, client_kind
):
    client = start_client(client_kind, fake_server.getsockname()[1], b"hello\n")
    peer, _ = fake_server.accept()
    with peer:
        assert receive_exactly(peer, 5) == b"hello"
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    assert finish(client) == (1, b"INFO :: Server Disconnected\n")


def test_end_of_input_exits_0_without_sending(fake_server, start_client, client_kind):
    client = start_client(client_kind, fake_server.getsockname()[1], b"\n\n")
    peer, _ = fake_server.accept()
    with peer:
        assert peer.recv(1) == b""

    assert finish(client) == (0, b"")


def test_connect_failure_prints_the_course_error(echo_build, free_port, client_kind):
    result = run_client(client_command(client_kind, echo_build, free_port), b"hello\n")

    assert (result.returncode, result.stdout) == (1, b"ERROR :: 2_Connect Error\n")


@pytest.mark.parametrize("arguments", [["not-an-ip"], ["127.0.0.1", "0"], ["127.0.0.1", "http"]])
def test_bad_arguments_print_usage_and_exit_2(echo_build, client_kind, arguments):
    command = client_command(client_kind, echo_build, 1)[:-2] + arguments
    result = subprocess.run(command, capture_output=True, timeout=WAIT_SECONDS, env=child_env())

    assert result.returncode == 2
    assert result.stdout == b""
    assert b"usage:" in result.stderr
