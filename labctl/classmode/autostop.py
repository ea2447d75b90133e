"""`fab provision --count N --auto-stop HOURS|off`: the single lab's auto-stop on every student's instance.

After the students' pipelines, every student of the roster with a running instance (also those skipped
because their last verify passed) gets the cloud half (shutdown behaviour `stop`, deadline tags: see
`infra.autostop`) and, over its own SSH connection, the host half (`lab.autostop`: `shutdown -h +MIN` or
the sleep + poweroff timer). A re-run with the same HOURS keeps the deadline and says unchanged; `off`
cancels both halves. The report's `auto_stop` column holds `<deadline> (<hours> h)` or `off`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TextIO

import paramiko

from infra import autostop, instances
from infra.errors import aws_errors
from lab.autostop import NOT_POSSIBLE
from lab.remote import Host
from lab.result import CHANGED, WOULD_CHANGE, HostReport, StepResult
from labctl import targets
from labctl.classmode.cancel import run_bounded, run_on_host
from labctl.classmode.report import StudentRow
from labctl.classmode.roster import Student
from labctl.classmode.shared import ClassOptions, ClassRun, student_lab
from labctl.errors import LabError
from labctl.single.auto_stop import cloud_half, host_step


def heading(hours: float) -> str:
    if hours == autostop.OFF:
        return "auto-stop off for every student: cancel the deadline and the scheduled shutdown"
    hours_text = autostop.hours_text(hours)
    return f"auto-stop after {hours_text} h for every student (a deadline for the same hours stays):"


def apply_class_auto_stop(
    run: ClassRun,
    class_options: ClassOptions,
    hours: float,
    rows: dict[str, StudentRow],
    out: TextIO,
    done: dict[str, list[str]] | None = None,
) -> list[str]:
    """Auto-stop on every student's running instance; updates `rows`; returns the students it failed for.

    `hours` as checked by ProvisionOptions (autostop.OFF cancels). `done`: the lines of the students whose
    pipeline already set it over its own connection (`over_connection`); the others get it here.
    """
    print(heading(hours), file=out, flush=True)
    done = done or {}
    students = list(class_options.students)
    rest = [s for s in students if s.id not in done]
    lines = run_bounded(rest, lambda s: _one_student(run, s, hours, rows), class_options.parallel, run.scope)
    by_student = dict(done)
    by_student.update((s.id, student_lines or []) for s, student_lines in zip(rest, lines))
    for student in students:
        for line in by_student.get(student.id, []):
            print(line, file=out)
    return [s.id for s in students if rows[s.id].error.startswith("auto-stop:")]


def over_connection(run: ClassRun, instance: dict, student: str, host: Host) -> tuple[list[str], str, str]:
    """One student's auto-stop at the end of its pipeline, over the pipeline's SSH connection (`host`).

    Returns the lines, the report's `auto_stop` value and the error ("" when it worked).
    """
    hours = run.auto_stop
    assert hours is not None
    try:
        with aws_errors():
            results, deadline = cloud_half(run.cloud.ec2, instance, hours)
        before = len(host.report.results)
        host_step(deadline)(host)
    except LabError as exc:
        return [f"  {student}: auto-stop failed: {exc}"], "", str(exc)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        message = f"the SSH connection broke ({exc or type(exc).__name__})"
        return [f"  {student}: auto-stop failed: {message}"], "", message
    value = auto_stop_text(deadline, hours)
    changes = [f"  {student}: {r.status} {r.resource}: {r.message}" for r in results if r.is_change]
    changes += _host_lines(student, host.report.results[before:])
    return changes or [f"  {student}: auto-stop unchanged ({value})"], value, ""


def _host_lines(student: str, results: list[StepResult]) -> list[str]:
    return [
        f"  {student}: {r.status} host {r.step}: {r.detail}"
        for r in results
        if r.status in (CHANGED, WOULD_CHANGE, NOT_POSSIBLE)
    ]


def _one_student(run: ClassRun, student: Student, hours: float, rows: dict[str, StudentRow]) -> list[str]:
    """One student's auto-stop; its row gets the `auto_stop` value or an `auto-stop:` error."""
    row = rows.get(student.id) or StudentRow(student.id, _lab(run, student))
    rows[student.id] = row
    row.error = "" if row.error.startswith("auto-stop:") else row.error  # last run's auto-stop error
    try:
        return _auto_stop_lines(run, student, hours, row)
    except LabError as exc:
        return _failed(row, str(exc))
    except Exception as exc:  # a bug must not hide the other students' results: report it in the row
        return _failed(row, f"unexpected {type(exc).__name__}: {exc} (please report this)")


def _lab(run: ClassRun, student: Student) -> str:
    return student_lab(run.ref.lab, student.id)


def _failed(row: StudentRow, message: str) -> list[str]:
    row.error = row.error or f"auto-stop: {message}"
    return [f"  {row.student}: auto-stop failed: {message}"]


def _auto_stop_lines(run: ClassRun, student: Student, hours: float, row: StudentRow) -> list[str]:
    with aws_errors():
        running = instances.find_instances(run.cloud.ec2, _lab(run, student), ["running"])
        if not running:
            return [f"  {student.id}: no running instance, nothing to set"]
        results, deadline = cloud_half(run.cloud.ec2, running[0], hours)
    row.auto_stop = auto_stop_text(deadline, hours)
    changes = [f"  {student.id}: {r.status} {r.resource}: {r.message}" for r in results if r.is_change]
    changes += _host_half(run, running[0], row, deadline)
    return changes or [f"  {student.id}: auto-stop unchanged ({row.auto_stop})"]


def auto_stop_text(deadline: datetime | None, hours: float) -> str:
    """The report's `auto_stop` value: `2026-11-26T21:30:00Z (2 h)`, or `off`."""
    return f"{autostop.format_deadline(deadline)} ({autostop.hours_text(hours)} h)" if deadline else "off"


def _host_half(run: ClassRun, instance: dict, row: StudentRow, deadline: datetime | None) -> list[str]:
    if run.cloud_only:
        return []  # as for a single lab: --cloud-only touches the tags only
    key_file = row.key_file if row.key_file and Path(row.key_file).exists() else None
    if key_file is None:
        return [f"  {row.student}: auto-stop only tagged: no private key here to set the host's timer"]
    target = replace(targets.host_target(run.cloud, instance, key_file), name=row.student)
    report = run_on_host(target, host_step(deadline), HostReport(), run.scope, options=run.host_options)
    if report.errors:
        message = "interrupted (Ctrl-C)" if run.scope.cancelled else next(iter(report.errors.values()))
        return _failed(row, message)
    return _host_lines(row.student, report.results)
