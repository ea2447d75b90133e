"""Echo servers under hostile clients: arbitrary sessions (hypothesis) against real sockets, and the sanitizer
builds under load with resets. Every server must answer exactly like the protocol says and keep serving."""

from __future__ import annotations

import socket
import struct
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.echo import connect, receive_exactly, send_line_expecting_nothing, unused_port

SERVERS = ("c_asan", "py", "py_concurrent", "c_poll_asan")


def expected_echo(chunk: bytes) -> bytes:
    """The protocol: one trailing "\\n" or "\\r\\n" removed, the rest echoed as is."""
    if chunk.endswith(b"\r\n"):
        return chunk[:-2]
    return chunk[:-1] if chunk.endswith(b"\n") else chunk


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST instead of a FIN (SO_LINGER 0), as a crashed or killed client does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# A session is a list of steps: a read's worth of bytes, or leaving by "exit", FIN or RST (then reconnecting).
reads = st.one_of(
    st.binary(min_size=1, max_size=99),
    st.sampled_from([b"\n", b"\r\n", b"exit\n", b"exit\r\n", b"exit", b"exit\x00\n", b"\x00", b"\r"]),
)
steps = st.one_of(reads, st.sampled_from(["fin", "rst"]))


class Session:
    """One client per server, driven in lockstep; returns what each server sent back per step."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.sockets = [connect(port) for port in ports]

    def step(self, step: bytes | str) -> list[bytes | str]:
        if isinstance(step, str):
            for index, sock in enumerate(self.sockets):
                sock.close() if step == "fin" else reset(sock)
                self.sockets[index] = connect(self.ports[index])
            return [step] * len(self.sockets)
        return [self._send(index, step) for index in range(len(self.sockets))]

    def _send(self, index: int, chunk: bytes) -> bytes | str:
        sock, expected = self.sockets[index], expected_echo(chunk)
        if expected == b"":
            send_line_expecting_nothing(sock, self.ports[index], chunk)
            return b""
        sock.sendall(chunk)
        if expected == b"exit":
            closed = sock.recv(1) == b""
            self.sockets[index] = connect(self.ports[index])
            return "closed by server" if closed else "not closed"
        return receive_exactly(sock, len(expected))

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def _model(step: bytes | str) -> bytes | str:
    if isinstance(step, str):
        return step
    expected = expected_echo(step)
    return "closed by server" if expected == b"exit" else expected


def test_any_session_gets_the_protocols_replies_from_every_server(start_server):
    servers = [start_server(kind, port=unused_port()) for kind in SERVERS]

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(session=st.lists(steps, min_size=1, max_size=8))
    def check(session: list) -> None:
        client = Session([server.port for server in servers])
        try:
            for step in session:
                assert client.step(step) == [_model(step)] * len(servers), step
        finally:
            client.close()

    check()
    for server in servers:
        server.assert_healthy()
        with connect(server.port) as sock:
            sock.sendall(b"still there?\n")
            assert receive_exactly(sock, 12) == b"still there?"


# --- sanitizer builds under load ----------------------------------------------------------------------


def _client_round(port: int, number: int) -> None:
    """One short client: a few echoes, then leaves by exit, FIN, RST or mid-line RST depending on `number`."""
    with connect(port) as sock:
        for k in range(3):
            line = f"client {number} line {k}".encode()
            sock.sendall(line + b"\n")
            assert receive_exactly(sock, len(line)) == line
        how = number % 4
        if how == 0:
            sock.sendall(b"exit\n")
            assert sock.recv(1) == b""
        elif how == 2:
            reset(socket.socket(fileno=sock.detach()))
        elif how == 3:
            sock.sendall(b"half a line without newl")
            reset(socket.socket(fileno=sock.detach()))


def _hammer(port: int, clients: int, threads: int) -> list[BaseException]:
    """`clients` sessions from `threads` threads at once; returns the failures."""
    failures: list[BaseException] = []
    numbers = iter(range(clients))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                number = next(numbers, None)
            if number is None:
                return
            try:
                _client_round(port, number)
            except (OSError, AssertionError) as exc:
                failures.append(exc)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=240)
    return failures


def _assert_serves_and_clean(server) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"after the storm\n")
        assert receive_exactly(sock, 15) == b"after the storm"
    server.assert_healthy()  # running, and nothing on stderr: no ASan/UBSan report


def test_iterative_asan_server_survives_many_fast_clients_with_resets(start_server):
    server = start_server("c_asan", port=unused_port())
    assert _hammer(server.port, clients=400, threads=8) == []
    _assert_serves_and_clean(server)
    messages = server.messages()
    assert messages.count("INFO :: Client want close... BYE") == 100


def test_poll_asan_server_survives_many_concurrent_clients_with_resets(start_server):
    server = start_server("c_poll_asan", port=unused_port())
    assert _hammer(server.port, clients=1000, threads=100) == []
    _assert_serves_and_clean(server)
    assert server.messages().count("INFO :: Client want close... BYE") == 250
