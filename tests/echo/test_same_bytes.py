"""Differential check: for any single read, every server writes back the same bytes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.echo import connect, receive_exactly, unused_port

SERVERS = ("c", "py", "py_concurrent", "c_poll")


def expected_echo(chunk: bytes) -> bytes:
    """The protocol: one trailing "\\n" or "\\r\\n" removed, the rest echoed as is."""
    if chunk.endswith(b"\r\n"):
        return chunk[:-2]
    return chunk[:-1] if chunk.endswith(b"\n") else chunk


# One read of 1-99 bytes that has something to echo (not empty after stripping, not "exit").
chunks = st.binary(min_size=1, max_size=99).filter(lambda chunk: expected_echo(chunk) not in (b"", b"exit"))


def test_every_server_echoes_any_read_identically(start_server):
    ports = [start_server(kind, port=unused_port()).port for kind in SERVERS]
    sockets = [connect(port) for port in ports]

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(chunk=chunks)
    def check(chunk: bytes) -> None:
        expected = expected_echo(chunk)
        replies = []
        for sock in sockets:
            sock.sendall(chunk)
            replies.append(receive_exactly(sock, len(expected)))
        assert replies == [expected] * len(SERVERS)

    try:
        check()
    finally:
        for sock in sockets:
            sock.close()
