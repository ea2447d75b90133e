"""Commands on one host over its single Fabric Connection: plain, with `sudo -n`, and file transfer."""

from __future__ import annotations

import io
import secrets
import shlex
import time
from dataclasses import dataclass, field
from typing import Any

from invoke.exceptions import CommandTimedOut

from lab.errors import HostError
from lab.result import HostReport, StepResult

SUDO_PASSWORD_HINT = "a password is required"
COMMAND_TIMEOUT = 120  # seconds; slow steps (apt, cloud-init) pass their own


@dataclass
class Output:
    """What a remote command printed and how it exited."""

    stdout: str
    stderr: str
    exited: int

    @property
    def ok(self) -> bool:
        return self.exited == 0


@dataclass
class Host:
    """One host during one task: its connection, its name in reports, dry-run mode and the report."""

    conn: Any
    name: str
    report: HostReport
    dry_run: bool = False
    _home: str | None = field(default=None, repr=False)

    @property
    def user(self) -> str:
        return self.conn.user

    def __post_init__(self) -> None:
        self.report.count(self.name, "connections")  # one Host per opened Connection

    def run(self, command: str, *, check: bool = False, timeout: int = COMMAND_TIMEOUT) -> Output:
        """Run a shell command as the login user; never echo it or its output to the terminal."""
        self.count_command()
        started = time.monotonic()
        try:
            result = self.conn.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
        except CommandTimedOut:
            raise self._timed_out(command, timeout) from None
        out = Output(result.stdout, result.stderr, result.exited)
        if not out.ok and time.monotonic() - started >= timeout:
            # invoke's timer killed it but was still running when invoke asked it (a race under load),
            # so the result came back as a plain failure instead of CommandTimedOut
            raise self._timed_out(command, timeout)
        if check and not out.ok:
            raise HostError(f"{self.name}: `{short(command)}` failed (exit {out.exited}): {last_line(out)}")
        return out

    def _timed_out(self, command: str, timeout: int) -> HostError:
        return HostError(
            f"{self.name}: `{short(command)}` did not finish within {timeout} s; "
            f"look at the host (is apt or cloud-init stuck?) and re-run"
        )

    def count_command(self) -> None:
        """Count one remote command (and a reconnect, if Fabric must open the connection again)."""
        if not getattr(self.conn, "is_connected", True):
            self.report.count(self.name, "connections")
        self.report.count(self.name, "commands")

    def sudo(self, command: str, *, check: bool = False, timeout: int = COMMAND_TIMEOUT) -> Output:
        """Run a shell command as root with non-interactive sudo (never a password prompt)."""
        out = self.run(as_root(command, self.user), timeout=timeout)
        self.refuse_sudo_password(out.stderr)
        if check and not out.ok:
            raise HostError(f"{self.name}: `{short(command)}` failed (exit {out.exited}): {last_line(out)}")
        return out

    def refuse_sudo_password(self, stderr: str) -> None:
        """HostError when sudo's output says it wants a password (we never type one)."""
        if SUDO_PASSWORD_HINT in stderr:
            raise HostError(
                f"{self.name}: sudo asks {self.user} for a password; give {self.user} passwordless sudo "
                f"(NOPASSWD in /etc/sudoers.d) or connect as a user that has it"
            )

    def put(self, data: bytes, remote: str) -> None:
        """Upload `data` to `remote` (relative paths are in the login user's home)."""
        self.report.count(self.name, "uploads")
        self.conn.put(io.BytesIO(data), remote=remote)

    def know_home(self, home: str) -> None:
        """Remember the home directory read in a batch of facts (saves asking again)."""
        if home.strip():
            self._home = home.strip()

    @property
    def home(self) -> str:
        """The login user's home directory (asked once)."""
        if self._home is None:
            self._home = self.run('printf %s "$HOME"', check=True).stdout.strip()
        return self._home

    def read_file(self, path: str, *, sudo: bool = False) -> str | None:
        """A remote text file's content, or None when it does not exist."""
        command = f"test -f {q(path)} && cat {q(path)}"
        out = self.sudo(command) if sudo else self.run(command)
        return out.stdout if out.ok else None

    def write_file(self, path: str, text: str, *, sudo: bool = False, mode: str = "0644") -> None:
        """Upload `text` to `path` (via a temporary file, then an atomic move)."""
        tmp = f"{self.home}/.labctl-upload.{secrets.token_hex(4)}"
        self.put(text.encode(), tmp)
        move = f"chmod {mode} {q(tmp)} && mv -f {q(tmp)} {q(path)}"
        if sudo:
            self.sudo(f"chown root:root {q(tmp)} && {move}", check=True)
        else:
            self.run(move, check=True)

    def record(self, step: str, status: str, detail: str = "") -> StepResult:
        return self.report.add(StepResult(self.name, step, status, detail))


def as_root(command: str, user: str) -> str:
    """`command` wrapped in `sudo -n sh -c` unless we are root already."""
    if user == "root":
        return f"sh -c {q(command)}"
    return f"sudo -n sh -c {q(command)}"


def q(text: str) -> str:
    """Shell-quote one word, keeping a leading `~/` expandable."""
    if text.startswith("~/"):
        return '"$HOME"/' + shlex.quote(text[2:])
    return shlex.quote(text)


def short(command: str, limit: int = 60) -> str:
    return command if len(command) <= limit else command[: limit - 3] + "..."


def last_line(out: Output) -> str:
    lines = (out.stderr.strip() or out.stdout.strip() or "no output").splitlines()
    return lines[-1]
