"""Live progress of class mode: one line per student, e.g. `s03  cloud ✓  provision ✓  deploy …  verify`.

On a terminal the lines are redrawn in place; otherwise (CI, a pipe), and on a terminal with fewer rows than
students (a redraw would scroll, leaving a copy of every line behind each time), a student's line is
appended each time one of its phases changes. Safe to call from many threads.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

PENDING = ""
RUNNING = "running"
DONE = "done"
FAILED = "failed"
SKIPPED = "skipped"

_MARKS = {PENDING: " ", RUNNING: "…", DONE: "✓", FAILED: "✗", SKIPPED: "-"}
_ASCII_MARKS = {PENDING: " ", RUNNING: "..", DONE: "ok", FAILED: "FAIL", SKIPPED: "-"}


def _can_encode(out: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(out, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def terminal_rows(out: TextIO) -> int | None:
    """The rows of the terminal `out` writes to ($LINES first, as curses does); None when unknown."""
    lines = os.environ.get("LINES", "")
    if lines.isdigit() and int(lines) > 0:
        return int(lines)
    try:
        return os.get_terminal_size(out.fileno()).lines or None
    except (AttributeError, OSError, ValueError):
        return None


def fits_in_place(out: TextIO, rows_needed: int) -> bool:
    """True when `rows_needed` lines can be redrawn in place on `out` (one row stays for the cursor)."""
    rows = terminal_rows(out)
    return rows is None or rows_needed < rows


class Progress:
    """The phases of every student and their marks, printed as they change."""

    def __init__(
        self, students: list[str], phases: tuple[str, ...], out: TextIO | None = None, tty: bool | None = None
    ) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        if self.tty and not fits_in_place(self.out, len(students)):
            self.tty = False  # more students than rows: append lines instead of redrawing
        self.phases = phases
        self.states = {student: {phase: PENDING for phase in phases} for student in students}
        self.width = max((len(s) for s in students), default=0)
        self.marks = _MARKS if _can_encode(self.out, "".join(_MARKS.values())) else _ASCII_MARKS
        self._lock = threading.Lock()
        self._drawn = False
        self._started: dict[tuple[str, str], float] = {}
        self.seconds: dict[str, dict[str, float]] = {student: {} for student in students}

    def line(self, student: str) -> str:
        """`s03  cloud ✓  provision …  deploy  verify`."""
        cells = [f"{phase} {self.marks[self.states[student][phase]]}".rstrip() for phase in self.phases]
        return f"{student.ljust(self.width)}  " + "  ".join(cells)

    def start(self) -> None:
        """Draw every line once (on a terminal), so later updates have lines to rewrite."""
        with self._lock:
            if self.tty:
                self._redraw()

    def set(self, student: str, phase: str, state: str) -> None:
        """Mark `phase` of `student` and show it."""
        with self._lock:
            if self.states[student][phase] == state:
                return
            self.states[student][phase] = state
            self._clock(student, phase, state)
            if self.tty:
                self._redraw()
            else:
                print(self.line(student), file=self.out, flush=True)

    def _clock(self, student: str, phase: str, state: str) -> None:
        now = time.monotonic()
        if state == RUNNING:
            self._started[(student, phase)] = now
        elif (student, phase) in self._started:
            self.seconds[student][phase] = now - self._started.pop((student, phase))

    def timings(self, student: str) -> str:
        """How long each finished phase took, e.g. `cloud 2.1 s, provision 14.0 s`."""
        return ", ".join(f"{phase} {secs:.1f} s" for phase, secs in self.seconds[student].items())

    def _redraw(self) -> None:
        if self._drawn:
            self.out.write(f"\x1b[{len(self.states)}F")
        for student in self.states:
            self.out.write(f"\x1b[2K{self.line(student)}\n")
        self.out.flush()
        self._drawn = True
