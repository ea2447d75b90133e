"""The result model: every step and check reports one line per host, readable or as JSON."""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import asdict, dataclass, field
from typing import Callable, TextIO

OK = "ok"
CHANGED = "changed"
WOULD_CHANGE = "would change"
FAILED = "failed"
PASSED = "pass"

GOOD_STATUSES = (OK, CHANGED, WOULD_CHANGE, PASSED)


@dataclass(frozen=True)
class StepResult:
    """What one step or check did on one host, with a short detail (and a probable cause on failure)."""

    host: str
    step: str
    status: str
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status not in GOOD_STATUSES

    def line(self, width: int = 0) -> str:
        """One readable line: `[host] step        status  detail`."""
        text = f"[{self.host}] {self.step.ljust(width)}  {self.status}"
        return f"{text}: {self.detail}" if self.detail else text


def outcome(needs_change: bool, dry_run: bool) -> str:
    """The status a step reports: `ok` when nothing differs, else `changed` or (dry run) `would change`."""
    if not needs_change:
        return OK
    return WOULD_CHANGE if dry_run else CHANGED


@dataclass
class HostReport:
    """Results of one task on all hosts, in order; optionally printed as they arrive."""

    results: list[StepResult] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    live: TextIO | None = None
    ssh: dict[str, dict[str, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, result: StepResult) -> StepResult:
        with self._lock:
            self.results.append(result)
            if self.live is not None:
                print(result.line(STEP_WIDTH), file=self.live, flush=True)
        return result

    def count(self, host: str, kind: str, n: int = 1) -> None:
        """Count SSH work per host: `connections`, `commands` (remote commands run), `uploads`."""
        with self._lock:
            counts = self.ssh.setdefault(host, {"connections": 0, "commands": 0, "uploads": 0})
            counts[kind] = counts.get(kind, 0) + n

    def ssh_line(self) -> str:
        """`ssh: h1 1 connection, 2 commands, 0 uploads; ...` (printed with the summary under LAB_VERBOSE)."""
        parts = [
            f"{host} {c['connections']} connection(s), {c['commands']} command(s), {c['uploads']} upload(s)"
            for host, c in self.ssh.items()
        ]
        return "ssh: " + ("; ".join(parts) if parts else "none")

    def fail_host(self, host: str, message: str) -> None:
        """Record that a host stopped with an expected error (a LabError's one line)."""
        self.add(StepResult(host, "error", FAILED, message))
        with self._lock:
            self.errors[host] = message

    @property
    def ok(self) -> bool:
        return not self.errors and not any(r.failed for r in self.results)

    @property
    def changed(self) -> list[StepResult]:
        return [r for r in self.results if r.status in (CHANGED, WOULD_CHANGE)]

    def text(self) -> str:
        """All results, one line each, with a closing summary line."""
        lines = [r.line(STEP_WIDTH) for r in self.results]
        lines.append(self.summary())
        return "\n".join(lines)

    def table(self) -> str:
        """A table: host, check, result, detail; then the summary line."""
        rows = [("HOST", "CHECK", "RESULT", "DETAIL")]
        rows += [(r.host, r.step, r.status.upper(), r.detail) for r in self.results]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3] for row in rows]
        return "\n".join([*(line.rstrip() for line in lines), self.summary()])

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        parts = [f"{n} {status}" for status, n in counts.items()]
        line = "summary: " + (", ".join(parts) if parts else "nothing to report")
        if os.environ.get(VERBOSE_ENV) and self.ssh:
            line += "\n" + self.ssh_line()
        return line

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "results": [asdict(r) for r in self.results],
            "errors": dict(self.errors),
            "ssh": {host: dict(counts) for host, counts in self.ssh.items()},
        }

    def json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=2)


STEP_WIDTH = 16
VERBOSE_ENV = "LAB_VERBOSE"  # set to 1: summaries also count SSH connections, commands and uploads


def stdout_report() -> HostReport:
    """A report that prints each line as soon as it is added."""
    return HostReport(live=sys.stdout)


StepFunc = Callable[..., StepResult]
