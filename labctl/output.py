"""Readable reports of cloud actions, and the one-line error handling the Fabric tasks share."""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable
from typing import Callable, TextIO, TypeVar

from infra.results import Result, any_change
from labctl.errors import LabError, LabInterrupted

F = TypeVar("F", bound=Callable)
_WIDTH = 12


def header(task: str, target: str, region: str, lab: str) -> str:
    """The first line of every task: what it acts on."""
    return f"{task}: target {target}, region {region}, lab {lab}"


_PLANNED = {
    "created": "would create",
    "changed": "would change",
    "started": "would start",
    "deleted": "would delete",
}


def format_result(result: Result) -> str:
    """One indented report line: status, resource and detail."""
    status = _PLANNED.get(result.status, result.status) if result.planned else result.status
    line = f"  {status:<{_WIDTH}} {result.resource}"
    return f"{line}: {result.message}" if result.message else line


def summary_line(results: Iterable[Result], planned: bool = False, unchanged: str = "") -> str:
    """The last line: whether anything changed (or would change)."""
    results = list(results)
    if any_change(results):
        return "plan: the changes above would be made" if planned else "done"
    return f"nothing to do: {unchanged or 'everything is already as wanted'}"


class Report:
    """Prints lines as a task goes, so an interrupted run still shows what happened."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.results: list[Result] = []

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def warn(self, text: str) -> None:
        print(f"warning: {text}", file=self.err, flush=True)

    def add(self, results: Iterable[Result]) -> None:
        for result in results:
            self.results.append(result)
            self.line(format_result(result))

    def finish(self, planned: bool = False, unchanged: str = "") -> None:
        self.line(summary_line(self.results, planned, unchanged))


def reports_lab_errors(func: F) -> F:
    """Turn a LabError (or Ctrl-C) in a task into one plain line on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except LabError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(130 if isinstance(exc, LabInterrupted) else 1) from None
        except KeyboardInterrupt:
            print(
                "interrupted: re-run the task to converge, or `fab teardown` to remove the lab",
                file=sys.stderr,
            )
            raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]
