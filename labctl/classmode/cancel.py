"""Ctrl-C in class mode: stop launching students at once and cut the running ones short within seconds.

A `CancelScope` is shared by every student of one class run. Ctrl-C (KeyboardInterrupt in the main thread)
sets it: `run_bounded` starts no further student, each student's SSH connection is closed (a command in
flight returns at once) and can no longer reopen, and the pipelines see the scope between their steps.
The students run on daemon threads, so a cloud call still in flight (a waiter's sleep) never keeps the
process from exiting; whatever such a call creates is found by tags on the next run or by `fab teardown`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Callable, TypeVar

from lab.provision import HostOptions
from lab.remote import Host
from lab.result import HostReport
from lab.target import HostTarget
from labctl.classmode.progress import RUNNING, Progress
from labctl.errors import LabError
from labctl.host_tasks import run_on_one_host

GRACE_SECONDS = 3.0  # how long Ctrl-C waits for the students to notice, before it reports anyway
POLL_SECONDS = 0.2

T = TypeVar("T")
R = TypeVar("R")


class StudentInterrupted(LabError):
    """Raised inside a student's pipeline once the class run was cancelled."""


class CancelScope:
    """The cancel flag of one class run and the SSH connections it must close when set."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._connections: set = set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise StudentInterrupted when the run was cancelled (called between steps)."""
        if self.cancelled:
            raise StudentInterrupted("interrupted (Ctrl-C)")

    def cancel(self) -> None:
        """Set the flag and close every registered connection (their commands return at once)."""
        self._event.set()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            _close_for_good(conn)

    @contextmanager
    def holding(self, conn) -> Iterator[None]:
        """Register `conn` for the duration of a block (closed by cancel(), also if cancelled already)."""
        with self._lock:
            self._connections.add(conn)
        try:
            if self.cancelled:
                _close_for_good(conn)
                raise StudentInterrupted("interrupted (Ctrl-C)")
            yield
        finally:
            with self._lock:
                self._connections.discard(conn)


def _refuse_reopen(*_args, **_kwargs) -> None:
    raise StudentInterrupted("interrupted (Ctrl-C): the SSH connection was closed")


def _close_for_good(conn) -> None:
    """Close a Fabric Connection so that no later command opens it again (Fabric reconnects on demand)."""
    conn.open = _refuse_reopen
    with contextlib.suppress(Exception):  # closing during an interrupt must never raise over it
        conn.close()


class CancellableProgress(Progress):
    """Progress lines that stop changing once the run is cancelled (marks stay where Ctrl-C found them)."""

    def __init__(self, scope: CancelScope, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scope = scope

    def set(self, student: str, phase: str, state: str) -> None:
        if not self.scope.cancelled:
            super().set(student, phase, state)

    def running_phase(self, student: str) -> str | None:
        """The phase a student was in (None when it had not started or had finished)."""
        return next((p for p, s in self.states[student].items() if s == RUNNING), None)


def run_bounded(
    items: Sequence[T], work: Callable[[T], R], parallel: int, scope: CancelScope
) -> list[R | None]:
    """`work(item)` for every item, at most `parallel` at once, on daemon threads; results in item order.

    On Ctrl-C the scope is cancelled, nothing new starts, the running items get GRACE_SECONDS to notice,
    and KeyboardInterrupt is raised again (items without a result are None).
    """
    results: list[R | None] = [None] * len(items)
    slots = threading.BoundedSemaphore(max(1, parallel))
    threads: list[threading.Thread] = []

    def worker(index: int) -> None:
        try:
            if not scope.cancelled:
                results[index] = work(items[index])
        finally:
            slots.release()

    try:
        for index in range(len(items)):
            while not slots.acquire(timeout=POLL_SECONDS):
                pass
            thread = threading.Thread(target=worker, args=(index,), daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            while thread.is_alive():
                thread.join(POLL_SECONDS)
    except KeyboardInterrupt:
        scope.cancel()
        _give_grace(threads)
        raise
    return results


def _give_grace(threads: list[threading.Thread]) -> None:
    deadline = time.monotonic() + GRACE_SECONDS
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def run_on_host(
    target: HostTarget,
    job: Callable[[Host], object],
    report: HostReport,
    scope: CancelScope,
    *,
    dry_run: bool = False,
    options: HostOptions | None = None,
) -> HostReport:
    """`job` on one host over one Connection, in this thread; the connection is closed by a cancel.

    Expected failures land in `report.errors` (one line), as in labctl.host_tasks.run_on_hosts.
    """
    try:
        scope.check()
    except StudentInterrupted as exc:
        report.fail_host(target.name, str(exc))
        return report
    run_on_one_host(target, job, report, dry_run=dry_run, options=options, guard=scope.holding)
    return report
