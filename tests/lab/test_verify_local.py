"""verify's checks from this machine, against real servers on loopback."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time

import pytest

from lab import deploy, verify
from lab.result import FAILED, PASSED, HostReport

ECHO_SERVER = str(deploy.ECHO_DIR / "echo_server.py")


def wait_accepting(port: int) -> None:
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


@pytest.fixture
def echo_server(free_port):
    proc = subprocess.Popen([sys.executable, ECHO_SERVER, str(free_port)], stdout=subprocess.DEVNULL)
    try:
        wait_accepting(free_port)
        yield free_port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class NewlineEchoServer:
    """A wrong echo server: answers with a trailing newline and ignores `exit`."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        try:
            client, _ = self.sock.accept()
        except OSError:
            return
        with client, contextlib.suppress(OSError):
            while data := client.recv(100):
                client.sendall(data + b"\n")


def test_tcp_echo_passes_against_the_lab_server(echo_server):
    detail = verify.tcp_echo("127.0.0.1", echo_server)
    assert detail == "2 round trips exact, exit closed the connection"


def test_tcp_echo_names_refused_port(free_port):
    with pytest.raises(verify.CheckFailed, match=f"TCP {free_port} refused: .*fab deploy-echo"):
        verify.tcp_echo("127.0.0.1", free_port)


def test_tcp_echo_rejects_a_newline_in_the_echo():
    server = NewlineEchoServer()
    try:
        with pytest.raises(verify.CheckFailed, match="echo differs|exit"):
            verify.tcp_echo("127.0.0.1", server.port)
    finally:
        server.sock.close()


def test_ping_loopback_passes():
    assert "packet loss" in verify.ping("127.0.0.1")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_check_records_pass_and_failure_with_cause(echo_server):
    report = HostReport()
    assert verify.check(report, "h", "good", lambda: verify.tcp_echo("127.0.0.1", echo_server))
    assert not verify.check(report, "h", "bad", lambda: verify.tcp_echo("127.0.0.1", closed_port()))
    assert [r.status for r in report.results] == [PASSED, FAILED]
    assert "refused" in report.results[1].detail
    assert not report.ok
