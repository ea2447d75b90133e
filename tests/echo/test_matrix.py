"""Every server (C, C with ASan/UBSan, Python, Python --concurrent) against every client (C, C with
ASan/UBSan, Python, a raw socket speaking like `nc`), over real loopback sockets."""

from __future__ import annotations

import socket
import struct

import pytest

from tests.support.echo import (
    CLIENT_KINDS,
    KOREAN_LINES,
    SERVER_KINDS,
    connect,
    talk,
    wait_until,
)

pytestmark = [
    pytest.mark.parametrize("server_kind", SERVER_KINDS),
    pytest.mark.parametrize("client_kind", CLIENT_KINDS),
]


def test_korean_text_round_trip_without_added_newline(start_server, echo_build, server_kind, client_kind):
    server = start_server(server_kind)

    output = talk(client_kind, echo_build, server.port, list(KOREAN_LINES))

    # One line per reply: an echo carrying its own "\n" would show up as an extra empty line.
    assert output == KOREAN_LINES[0] + b"\n" + KOREAN_LINES[1] + b"\n"
    server.assert_healthy()


def test_crlf_is_stripped_like_lf(start_server, echo_build, server_kind, client_kind):
    server = start_server(server_kind)

    output = talk(client_kind, echo_build, server.port, [b"windows\r", b"unix"])

    assert output == b"windows\nunix\n"
    server.assert_healthy()


def test_exit_closes_that_client_and_the_server_serves_the_next(
    start_server, echo_build, server_kind, client_kind
):
    server = start_server(server_kind)

    first = talk(client_kind, echo_build, server.port, [b"first", b"exit", b"never sent"])
    assert server.wait_for_messages(1) == ["INFO :: Client want close... BYE"]
    second = talk(client_kind, echo_build, server.port, [b"second"])

    assert (first, second) == (b"first\n", b"second\n")
    assert server.wait_for_messages(2)[1] == "INFO :: Disconnect with client... BYE"
    server.assert_healthy()


def test_a_client_resetting_the_connection_does_not_kill_the_server(
    start_server, echo_build, server_kind, client_kind
):
    server = start_server(server_kind)
    with connect(server.port) as rude:
        rude.sendall(b"hello\n")
        assert rude.recv(99) == b"hello"
        # SO_LINGER with timeout 0: close() sends RST instead of FIN.
        rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert server.wait_for_messages(1) == ["ERROR :: 5_read Error"]

    output = talk(client_kind, echo_build, server.port, [b"still there?"])

    assert output == b"still there?\n"
    server.assert_healthy()


def test_oversized_line_is_echoed_in_99_byte_pieces(start_server, echo_build, server_kind, client_kind):
    server = start_server(server_kind)
    line = bytes(range(ord("A"), ord("Z") + 1)) * 10  # 260 bytes, more than one read of 99

    output = talk(client_kind, echo_build, server.port, [line, b"after"])

    if client_kind == "raw":
        # One send of 261 bytes; the server reads 99 + 99 + 63 and echoes all but the "\n".
        assert output == line + b"\nafter\n"
    else:
        # The clients read at most 99 bytes of a line at a time and send each piece as its own line.
        assert output == line[:99] + b"\n" + line[99:198] + b"\n" + line[198:] + b"\nafter\n"
    server.assert_healthy()


def test_binary_bytes_are_echoed_exactly(start_server, echo_build, server_kind, client_kind):
    server = start_server(server_kind)
    binary = b"\x00\x01\x02 NUL before and \xff\xfe\x80 invalid UTF-8 after \x7f\x00"

    output = talk(client_kind, echo_build, server.port, [binary, b"exit"])

    assert output == binary + b"\n"
    server.assert_healthy()


def test_empty_lines_get_no_reply_and_do_not_block_the_next_line(
    start_server, echo_build, server_kind, client_kind
):
    server = start_server(server_kind)

    output = talk(client_kind, echo_build, server.port, [b"", b"abc", b"", b"\r", b"", b"def"])

    assert output == b"abc\ndef\n"
    bye = ["INFO :: Disconnect with client... BYE"]
    wait_until(lambda: server.messages() == bye, "the disconnect message")
    server.assert_healthy()
