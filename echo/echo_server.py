#!/usr/bin/env python3
"""TCP echo server: a port of echo_server.c, byte for byte the same on the wire.

Each read takes at most 99 bytes; a trailing "\\n" (or "\\r\\n") is stripped and the rest is written back
without a newline. A read that is only a newline leaves nothing to echo, so nothing is written. "exit"
closes that client. By default one client at a time, like the C server; with --concurrent, many clients
at once through `selectors` (the course's "keep the client sockets in an array" idea), each handled the
same way. Standard library only; runs on Python 3.8 and newer.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import selectors
import signal
import socket
import sys

DEFAULT_PORT = 12345
READ_SIZE = 99  # the C server reads BUF_SIZE - 1 = 99 bytes into a buffer of 100
BACKLOG = 5  # listen(5) in the C server
CONCURRENT_BACKLOG = 1024
RETRYABLE_ACCEPT_ERRORS = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED, errno.EINTR)
OUT_OF_FILES_ERRORS = (errno.EMFILE, errno.ENFILE)


def say(message: str) -> None:
    """Print a course message at once, so logs of a background service stay current."""
    print(message, flush=True)


def strip_enter(chunk: bytes) -> bytes:
    """Remove one trailing "\\n" or "\\r\\n" (removeEnter in the C code)."""
    if chunk.endswith(b"\n"):
        chunk = chunk[:-1]
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
    return chunk


def answer(chunk: bytes) -> bytes | None:
    """What to write back for one non-empty read; None when the client asked to close with "exit"."""
    if chunk[-1:] == b"\n":  # cheap test first: this runs once per message
        chunk = strip_enter(chunk)
    return None if chunk == b"exit" else chunk


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
    parser = argparse.ArgumentParser(description="TCP echo server of the network-programming lab.")
    parser.add_argument(
        "port",
        nargs="?",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"TCP port to listen on (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--concurrent",
        action="store_true",
        help="serve many clients at once (selectors) instead of one at a time",
    )
    return parser.parse_args(argv)


def listening_socket(port: int, backlog: int) -> socket.socket | None:
    """socket -> SO_REUSEADDR -> bind INADDR_ANY -> listen, with the C server's error messages."""
    try:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        say("ERROR :: 1_Socket Create Error")
        return None
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind(("0.0.0.0", port))
    except OSError:
        server.close()
        say("ERROR :: 2_bind Error")
        return None
    try:
        server.listen(backlog)
    except OSError:
        server.close()
        say("ERROR :: 3_listen Error")
        return None
    return server


# ---------------------------------------------------------------- one client at a time (like the C code)


def serve_client(client: socket.socket) -> None:
    """The C server's inner loop for one connected client; returns when that client is done."""
    receive, send = client.recv, client.sendall  # looked up once: this loop is the hot path
    while True:
        try:
            chunk = receive(READ_SIZE)
        except OSError:
            say("ERROR :: 5_read Error")
            return
        if not chunk:
            say("INFO :: Disconnect with client... BYE")
            return
        reply = answer(chunk)
        if reply is None:
            say("INFO :: Client want close... BYE")
            return
        if not reply:
            continue
        try:
            send(reply)
        except OSError:
            say("ERROR :: 6_write Error")
            return


def serve_iteratively(server: socket.socket) -> int:
    """Accept one client, serve it to the end, accept the next."""
    while True:
        try:
            client, _ = server.accept()
        except OSError as error:
            if error.errno in RETRYABLE_ACCEPT_ERRORS:
                continue
            say("ERROR :: 4_accept Error")
            return 1
        with client:
            serve_client(client)


# ---------------------------------------------------------------- many clients at once (--concurrent)


class Client:
    """One connected client in the concurrent server: its socket and the echo bytes not yet sent."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.unsent = b""
        self.waiting_to_write = False  # registered for EVENT_WRITE instead of EVENT_READ


class ConcurrentServer:
    """All clients in one selector; a client with unsent echo bytes is not read until they are sent."""

    def __init__(self, server: socket.socket) -> None:
        self.server = server
        self.selector = selectors.DefaultSelector()
        server.setblocking(False)
        self.selector.register(server, selectors.EVENT_READ, None)
        self.accepting = True

    def run(self) -> int:
        while True:
            for key, events in self.selector.select():
                if key.data is None:
                    if not self.accept_waiting():
                        return 1
                elif events & selectors.EVENT_WRITE:
                    self.send_unsent(key.data)
                else:
                    self.read_from(key.data)

    def accept_waiting(self) -> bool:
        """Accept every queued connection; False on an error the C server would stop for.

        Out of file descriptors, it stops accepting until a client leaves (new clients wait in the backlog).
        """
        while True:
            try:
                sock, _ = self.server.accept()
            except OSError as error:
                if error.errno in RETRYABLE_ACCEPT_ERRORS:
                    return True
                say("ERROR :: 4_accept Error")
                if error.errno in OUT_OF_FILES_ERRORS:
                    self.selector.unregister(self.server)
                    self.accepting = False
                    return True
                return False
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, Client(sock))

    def read_from(self, client: Client) -> None:
        try:
            chunk = client.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self.drop(client, "ERROR :: 5_read Error")
            return
        if not chunk:
            self.drop(client, "INFO :: Disconnect with client... BYE")
            return
        reply = answer(chunk)
        if reply is None:
            self.drop(client, "INFO :: Client want close... BYE")
            return
        client.unsent = reply
        self.send_unsent(client)

    def send_unsent(self, client: Client) -> None:
        """Send what is pending; wait for writability if the client's window is full."""
        try:
            sent = client.sock.send(client.unsent) if client.unsent else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self.drop(client, "ERROR :: 6_write Error")
            return
        client.unsent = client.unsent[sent:]
        if bool(client.unsent) != client.waiting_to_write:
            client.waiting_to_write = bool(client.unsent)
            wanted = selectors.EVENT_WRITE if client.waiting_to_write else selectors.EVENT_READ
            self.selector.modify(client.sock, wanted, client)

    def drop(self, client: Client, message: str) -> None:
        say(message)
        self.selector.unregister(client.sock)
        client.sock.close()
        if not self.accepting:
            self.selector.register(self.server, selectors.EVENT_READ, None)
            self.accepting = True


def raise_open_file_limit() -> None:
    """Let the concurrent server hold as many sockets as the hard limit allows (Ubuntu: soft limit 1024)."""
    try:
        import resource
    except ImportError:  # not on Unix
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (e.g. from a service manager) ends the server cleanly: sockets closed, exit status 0."""
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    if args.concurrent:
        raise_open_file_limit()
    server = listening_socket(args.port, CONCURRENT_BACKLOG if args.concurrent else BACKLOG)
    if server is None:
        return 1
    try:
        with server:
            return ConcurrentServer(server).run() if args.concurrent else serve_iteratively(server)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
