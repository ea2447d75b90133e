"""Issue 12 item 8: more students than terminal rows: lines are appended, not redrawn (no scrollback)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import termios

import pytest

from labctl.classmode.progress import DONE, Progress

PHASES = ("cloud", "provision", "deploy", "verify")


@pytest.fixture
def terminal(monkeypatch):
    """A real pseudo-terminal of 20 rows x 80 columns; yields (writer on its slave side, master fd)."""
    monkeypatch.delenv("LINES", raising=False)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 20, 80, 0, 0))
    out = os.fdopen(slave, "w", encoding="utf-8")
    yield out, master
    out.close()
    os.close(master)


def _written(master: int) -> bytes:
    os.set_blocking(master, False)
    chunks = []
    try:
        while chunk := os.read(master, 65536):
            chunks.append(chunk)
    except (BlockingIOError, OSError):
        pass
    return b"".join(chunks)


def _run(out, students: list[str]) -> None:
    progress = Progress(students, PHASES, out)  # tty found out from `out`, as class mode does
    progress.start()
    for student in students:
        progress.set(student, "cloud", DONE)
    out.flush()


def test_thirty_students_on_a_twenty_row_terminal_are_appended(terminal):
    out, master = terminal
    students = [f"s{n:02d}" for n in range(1, 31)]
    _run(out, students)
    written = _written(master)
    assert b"\x1b[" not in written  # no cursor movement at all
    assert written.count(b"\n") == 30  # one line per change, not 30 redraws of 30 lines


def test_ten_students_on_a_twenty_row_terminal_are_redrawn_in_place(terminal):
    out, master = terminal
    _run(out, [f"s{n:02d}" for n in range(1, 11)])
    assert _written(master).count(b"\x1b[10F") == 10


def test_lines_from_the_environment_count_too(monkeypatch, terminal):
    out, master = terminal
    monkeypatch.setenv("LINES", "5")
    _run(out, [f"s{n:02d}" for n in range(1, 11)])
    assert b"\x1b[" not in _written(master)
