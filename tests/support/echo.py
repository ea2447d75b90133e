"""Helpers for the echo tests: start/stop servers by PID, run clients, speak raw TCP, read /proc/net/tcp."""

from __future__ import annotations

import glob
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ECHO_DIR = Path(__file__).resolve().parents[2] / "echo"
SERVER_KINDS = ("c", "c_asan", "py", "py_concurrent", "c_poll", "c_poll_asan")
CONCURRENT_SERVER_KINDS = ("py_concurrent", "c_poll", "c_poll_asan")
CLIENT_KINDS = ("c", "c_asan", "py", "raw")
PROGRAM_CLIENT_KINDS = ("c", "c_asan", "py")
WAIT_SECONDS = 15.0
SANITIZER_MARKERS = (b"Sanitizer", b"runtime error:")
# Report leaks and stop at the first error; UBSan prints a stack.
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1", "UBSAN_OPTIONS": "print_stacktrace=1"}
KOREAN_LINES = ("즐거운 네트워크 수업시간!".encode(), "안녕 싸피".encode())


def server_command(kind: str, build: Path, port: int, python: str = sys.executable) -> list[str]:
    """The command line that starts a server of `kind` on `port`."""
    binaries = {
        "c": "echo_server",
        "c_asan": "echo_server_asan",
        "c_poll": "echo_server_poll",
        "c_poll_asan": "echo_server_poll_asan",
    }
    if kind in binaries:
        return [str(build / binaries[kind]), str(port)]
    script = [python, str(ECHO_DIR / "echo_server.py"), str(port)]
    return script + ["--concurrent"] if kind == "py_concurrent" else script


def client_command(kind: str, build: Path, port: int, python: str = sys.executable) -> list[str]:
    """The command line that runs a client program of `kind` against 127.0.0.1:`port`."""
    if kind == "c":
        return [str(build / "echo_client"), "127.0.0.1", str(port)]
    if kind == "c_asan":
        return [str(build / "echo_client_asan"), "127.0.0.1", str(port)]
    return [python, str(ECHO_DIR / "echo_client.py"), "127.0.0.1", str(port)]


def child_env() -> dict[str, str]:
    return {**os.environ, **SANITIZER_ENV}


def has_sanitizer_report(stderr: bytes) -> bool:
    return any(marker in stderr for marker in SANITIZER_MARKERS)


# ------------------------------------------------------------------ /proc/net/tcp


def _tcp_table() -> list[list[str]]:
    with open("/proc/net/tcp") as table:
        return [line.split() for line in table.readlines()[1:]]


def _port_of(address: str) -> int:
    return int(address.split(":")[1], 16)


def is_listening(port: int) -> bool:
    """True when some socket listens on TCP `port` (state 0A in /proc/net/tcp)."""
    return any(_port_of(row[1]) == port and row[3] == "0A" for row in _tcp_table())


def unread_bytes(server_port: int, client_port: int) -> int:
    """Bytes the server side of a loopback connection has received but not read yet."""
    for row in _tcp_table():
        if _port_of(row[1]) == server_port and _port_of(row[2]) == client_port:
            return int(row[4].split(":")[1], 16)
    return 0


def wait_until(condition, what: str, seconds: float = WAIT_SECONDS) -> None:
    """Poll `condition` until it holds; fail naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ------------------------------------------------------------------ servers


class EchoServer:
    """A server process with stdout/stderr in files; stopped by PID."""

    def __init__(
        self, command: list[str], port: int, log_dir: Path, max_open_files: int | None = None
    ) -> None:
        self.command = command
        self.port = port
        self.log_dir = log_dir
        self.max_open_files = max_open_files
        self.process: subprocess.Popen | None = None

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / "stdout"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / "stderr"

    def start(self) -> None:
        self.log_dir.mkdir(parents=True)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                self.command, stdout=out, stderr=err, env=child_env(), preexec_fn=self._limit_open_files
            )
        wait_until(lambda: is_listening(self.port) or self.process.poll() is not None, f"port {self.port}")
        assert self.process.poll() is None, f"server exited early: {self.output()!r} {self.errors()!r}"

    def _limit_open_files(self) -> None:
        """In the child before exec: a hard open-file limit, so running out of descriptors can be tested."""
        if self.max_open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.max_open_files, self.max_open_files))

    def output(self) -> str:
        return self.stdout_path.read_text()

    def errors(self) -> bytes:
        return self.stderr_path.read_bytes()

    def messages(self) -> list[str]:
        return self.output().splitlines()

    def wait_for_messages(self, count: int) -> list[str]:
        """Wait until the server printed at least `count` lines; return all lines."""
        wait_until(lambda: len(self.messages()) >= count, f"{count} server messages, got {self.output()!r}")
        return self.messages()

    def assert_healthy(self) -> None:
        """Still running, nothing on stderr (so no sanitizer report)."""
        assert self.process is not None and self.process.poll() is None, f"server died: {self.errors()!r}"
        assert self.errors() == b"", self.errors().decode(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it lingers; returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


# ------------------------------------------------------------------ clients


def run_client(command: list[str], stdin: bytes) -> subprocess.CompletedProcess:
    """Run a client program to completion with `stdin`; its stderr must stay empty."""
    result = subprocess.run(command, input=stdin, capture_output=True, timeout=WAIT_SECONDS, env=child_env())
    assert result.stderr == b"", result.stderr.decode(errors="replace")
    return result


def unused_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_SECONDS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    """Read until `size` bytes arrived (or the peer closed)."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def send_line_expecting_nothing(sock: socket.socket, server_port: int, line: bytes) -> None:
    """Send a line the server answers with nothing, and wait until the server has read it.

    Waiting keeps the next line out of the same read(), as when a person types lines into `nc`.
    """
    sock.sendall(line)
    client_port = sock.getsockname()[1]
    wait_until(lambda: unread_bytes(server_port, client_port) == 0, "the server to read the line")
    time.sleep(0.02)  # and to return from that read() (a packet can sit in the socket backlog meanwhile)


def raw_talk(port: int, lines: list[bytes]) -> bytes:
    """Speak like `nc`: send each line with "\\n", return the replies as a client prints them."""
    output = b""
    with connect(port) as sock:
        for line in lines:
            if not line.rstrip(b"\r"):
                send_line_expecting_nothing(sock, port, line + b"\n")
                continue
            sock.sendall(line + b"\n")
            if line == b"exit":
                assert sock.recv(1) == b"", "the server must close the connection after exit"
                return output
            expected = len(line[:-1] if line.endswith(b"\r") else line)
            output += receive_exactly(sock, expected) + b"\n"
    return output


def talk(kind: str, build: Path, port: int, lines: list[bytes], python: str = sys.executable) -> bytes:
    """One client session of `kind` sending `lines`; returns what a client program would print."""
    if kind == "raw":
        return raw_talk(port, lines)
    result = run_client(client_command(kind, build, port, python), b"".join(line + b"\n" for line in lines))
    assert result.returncode == 0, result.stdout
    return result.stdout


def find_python38() -> str | None:
    """A working Python 3.8 interpreter, if this machine has one (on PATH or under pyenv)."""
    candidates = [shutil.which("python3.8")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
        )
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 8)":
            return candidate
    return None
