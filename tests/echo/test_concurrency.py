"""The concurrent servers (Python --concurrent, C with poll) serve many clients at once; the course's servers
serve one client at a time."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from tests.support.echo import (
    CONCURRENT_SERVER_KINDS,
    KOREAN_LINES,
    WAIT_SECONDS,
    child_env,
    client_command,
    connect,
    receive_exactly,
    talk,
    wait_until,
)

CLIENT_COUNT = 50
MAX_OPEN_FILES = 32


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("server_kind", CONCURRENT_SERVER_KINDS)
def test_fifty_clients_at_once_each_get_their_own_echoes(start_server, server_kind):
    server = start_server(server_kind)
    clients = [connect(server.port) for _ in range(CLIENT_COUNT)]
    try:
        for round_number in range(3):
            messages = [
                f"client {i} round {round_number} ".encode() + KOREAN_LINES[1] for i in range(CLIENT_COUNT)
            ]
            for sock, message in zip(clients, messages):
                sock.sendall(message + b"\n")
            replies = [receive_exactly(sock, len(message)) for sock, message in zip(clients, messages)]
            assert replies == messages
    finally:
        for sock in clients:
            sock.close()
    assert server.wait_for_messages(CLIENT_COUNT) == ["INFO :: Disconnect with client... BYE"] * CLIENT_COUNT
    server.assert_healthy()


@pytest.mark.parametrize("server_kind", CONCURRENT_SERVER_KINDS)
def test_client_programs_run_side_by_side(start_server, echo_build, server_kind):
    server = start_server(server_kind)
    lines = [b"side", b"by", b"side"]
    processes = [
        subprocess.Popen(
            client_command(kind, echo_build, server.port),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
        )
        for kind in ("c", "py", "c_asan") * 4
    ]
    try:
        # Every client is connected and has sent its first line before any of them is told to finish.
        for process in processes:
            process.stdin.write(b"side\n")
            process.stdin.flush()
        results = [process.communicate(b"by\nside\n", timeout=WAIT_SECONDS) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    assert results == [(b"".join(line + b"\n" for line in lines), b"")] * len(processes)
    server.assert_healthy()


@pytest.mark.parametrize("server_kind", CONCURRENT_SERVER_KINDS)
def test_exit_from_one_client_leaves_the_others_connected(start_server, echo_build, server_kind):
    server = start_server(server_kind)
    with connect(server.port) as staying, connect(server.port) as leaving:
        staying.sendall(b"before\n")
        assert receive_exactly(staying, 6) == b"before"
        leaving.sendall(b"exit\n")
        assert leaving.recv(1) == b""
        staying.sendall(b"after\n")
        assert receive_exactly(staying, 5) == b"after"
        assert talk("py", echo_build, server.port, [b"newcomer"]) == b"newcomer\n"
    server.assert_healthy()


@pytest.mark.parametrize("server_kind", CONCURRENT_SERVER_KINDS)
def test_a_client_that_never_reads_does_not_stall_the_others(start_server, server_kind):
    server = start_server(server_kind)
    with connect(server.port) as flooder, connect(server.port) as polite:
        flooder.setblocking(False)
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:
                sent += flooder.send(b"x" * 98 + b"\n")
        except BlockingIOError:
            pass  # both directions' buffers are full: the server must have stopped reading the flooder
        assert sent < 64 * 1024 * 1024, "the server kept reading although its echoes were not taken"

        polite.sendall(b"hello\n")
        assert receive_exactly(polite, 5) == b"hello"
    server.assert_healthy()


@pytest.mark.parametrize("server_kind", CONCURRENT_SERVER_KINDS)
def test_out_of_file_descriptors_the_server_waits_for_a_free_one(start_server, server_kind):
    server = start_server(server_kind, max_open_files=MAX_OPEN_FILES)
    clients: list[socket.socket] = []
    try:
        while open_files(server.process.pid) < MAX_OPEN_FILES:
            assert len(clients) < MAX_OPEN_FILES, "the server does not hold its clients' sockets"
            clients.append(connect(server.port))
            clients[-1].sendall(b"ping\n")
            assert receive_exactly(clients[-1], 4) == b"ping"
        waiting = connect(server.port)  # the server has no descriptor left for it: it stays in the backlog
        clients.append(waiting)
        waiting.sendall(b"pong\n")
        wait_until(lambda: "ERROR :: 4_accept Error" in server.messages(), "the accept error")

        clients.pop(0).close()  # frees a descriptor in the server

        assert receive_exactly(waiting, 4) == b"pong"
    finally:
        for sock in clients:
            sock.close()
    server.assert_healthy()


@pytest.mark.parametrize("server_kind", ["c", "py"])
def test_the_course_servers_serve_one_client_at_a_time(start_server, server_kind):
    server = start_server(server_kind)
    with connect(server.port) as first, connect(server.port) as second:
        first.sendall(b"one\n")
        assert receive_exactly(first, 3) == b"one"
        second.sendall(b"two\n")
        second.settimeout(0.3)
        with pytest.raises(socket.timeout):
            second.recv(3)  # queued behind the first client
        first.sendall(b"exit\n")
        second.settimeout(WAIT_SECONDS)
        assert receive_exactly(second, 3) == b"two"
    server.assert_healthy()
