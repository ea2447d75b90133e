#!/usr/bin/env python3
"""TCP echo client: a port of echo_client.c, byte for byte the same on the wire.

Reads a line from stdin (at most 99 bytes; a longer line is sent in 99-byte pieces), strips the newline,
skips it if empty, sends it, and prints the reply (one read of at most 99 bytes) on its own line. "exit"
is sent and ends the client; so does end of input. Standard library only; runs on Python 3.8 and newer.
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import BinaryIO

DEFAULT_IP = "127.0.0.1"
DEFAULT_PORT = 12345
READ_SIZE = 99  # the C client reads BUF_SIZE - 1 = 99 bytes into a buffer of 100


def say(message: str) -> None:
    print(message, flush=True)


def strip_enter(line: bytes) -> bytes:
    """Remove one trailing "\\n" or "\\r\\n" (removeEnter in the C code)."""
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line


def ipv4_address(value: str) -> str:
    """argparse type: a dotted IPv4 address, as inet_pton(AF_INET) accepts it."""
    try:
        socket.inet_pton(socket.AF_INET, value)
    except OSError:
        raise argparse.ArgumentTypeError(f"invalid IPv4 address {value!r}") from None
    return value


def port_number(value: str) -> int:
    """argparse type: a TCP port 1-65535."""
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {value!r} (use 1-65535)")
    return port


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="TCP echo client of the network-programming lab.")
    parser.add_argument(
        "ip",
        nargs="?",
        type=ipv4_address,
        default=DEFAULT_IP,
        help=f"server IPv4 address (default {DEFAULT_IP})",
    )
    parser.add_argument(
        "port",
        nargs="?",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"server TCP port (default {DEFAULT_PORT})",
    )
    return parser.parse_args(argv)


def chat(sock: socket.socket, lines: BinaryIO, out: BinaryIO) -> int:
    """The C client's loop: send each non-empty line, print each reply; returns the exit status."""
    while True:
        line = lines.readline(READ_SIZE)
        if not line:
            return 0
        text = strip_enter(line)
        if not text:
            continue
        try:
            sock.sendall(text)
        except OSError:
            say("INFO :: Server Disconnected")
            return 1
        if text == b"exit":
            return 0
        try:
            reply = sock.recv(READ_SIZE)
        except OSError:
            say("INFO :: Server Disconnected")
            return 1
        if not reply:
            say("INFO :: Server Disconnected")
            return 0
        out.write(reply + b"\n")
        out.flush()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        say("ERROR :: 1_Socket Create Error")
        return 1
    with sock:
        try:
            sock.connect((args.ip, args.port))
        except OSError:
            say("ERROR :: 2_Connect Error")
            return 1
        try:
            return chat(sock, sys.stdin.buffer, sys.stdout.buffer)
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(main())
