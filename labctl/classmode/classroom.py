"""Class mode's run: every student's lab, in parallel (`fab provision --students FILE` or `--count N`).

Each student gets an own security group by default (a broken or widened rule touches one student only,
and a student's `cidr` opens only their own lab); `--shared-sg` makes one group `labctl-<class>--shared`
whose rules are the union of the operator's and all students' CIDRs.

Every student runs cloud → provision (host setup) → deploy (echo server) → verify on a bounded pool of
daemon threads, over one SSH connection per student. One student's failure never stops the others. The
report (one row per student, `labctl.classmode.report`) is written to the state dir as `class-<name>.json`
and `.csv`; a re-run skips students whose last verify passed (unless `redo_all`) and retries the others.

The rest lives next door in `labctl.classmode`: `--dry-run` in `plan`, `--auto-stop` in `autostop`,
Ctrl-C in `cancel` (stop, close the SSH connections) and `interrupt` (the one line).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO

from infra import instances, keys, quota, security_group
from infra.errors import aws_errors
from infra.results import Result
from infra.tags import CLASS_KEY, resource_name, tagged
from lab import deploy
from lab.provision import HostOptions, provision
from lab.remote import Host
from lab.result import HostReport
from lab.target import HostTarget
from lab.verify import verify_from_here, verify_on_host
from labctl import targets
from labctl.classmode import autostop, interrupt, plan, shared
from labctl.classmode.cancel import CancellableProgress, run_bounded, run_on_host
from labctl.classmode.progress import DONE, FAILED, RUNNING, SKIPPED, Progress
from labctl.classmode.report import StudentRow, load_rows, report_table, write_private, write_report
from labctl.classmode.roster import Student, numbered_students, read_students
from labctl.classmode.shared import (
    DEFAULT_PARALLEL,
    FAIL,
    INTERRUPTED,
    PASS,
    PHASES,
    ClassOptions,
    ClassRun,
    class_tags,
    shared_group_lab,
    student_lab,
)
from labctl.errors import LabError
from labctl.labref import LabRef, resolve_lab
from labctl.output import header
from labctl.state import CLASS_MODE, LabState, key_dir

if TYPE_CHECKING:
    from labctl.options import ProvisionOptions


@dataclass
class StudentOutcome:
    row: StudentRow
    cloud_results: list[Result] = field(default_factory=list)
    auto_stop_lines: list[str] | None = None  # set when the pipeline also set auto-stop (over its connection)


# --- one student's cloud part -----------------------------------------------------------------------------


def _public_key_file(student: Student, key_name: str, default: str | None) -> Path | None:
    """The public key to import for a student: their CSV key (text saved to the state dir, or a path)."""
    value = student.public_key or default
    if value is None:
        return None
    if not value.startswith(("ssh-", "ecdsa-", "sk-")):
        return Path(value).expanduser()
    path = key_dir() / f"{key_name}.pub"
    if not path.exists() or path.read_text().strip() != value.strip():
        write_private(path, value.strip() + "\n")
    return path


def _student_group(run: ClassRun, lab: str, student: Student, results: list[Result]) -> str:
    if run.shared_group_id:
        return run.shared_group_id
    sources = sorted({run.operator_cidr, student.cidr or run.operator_cidr})
    found, group_id = security_group.ensure_security_group(
        run.cloud.ec2, lab, run.vpc_id, sources, tags=class_tags(run.ref.lab, student.id)
    )
    results.extend(found)
    return group_id or ""


def cloud_part(run: ClassRun, student: Student) -> tuple[dict, Path | None, list[Result]]:
    """Key pair, security group (unless shared) and instance of one student; returns the running instance."""
    lab = student_lab(run.ref.lab, student.id)
    key_name = resource_name(lab)
    tags = class_tags(run.ref.lab, student.id)
    public_key = _public_key_file(student, key_name, run.public_key)
    with aws_errors():
        result, key_file = keys.ensure_key_pair(
            run.cloud.ec2, lab, key_name, key_dir(), public_key, tags=tags
        )
        results = [result]
        group_id = _student_group(run, lab, student, results)
        spec = instances.InstanceSpec(
            lab, run.image_id, run.instance_type, key_name, group_id, 1, tuple(tags.items()), run.subnet_id
        )
        created, described = instances.ensure_instances(run.cloud.ec2, spec)
    return described[0], key_file, results + created


# --- one student's host part ------------------------------------------------------------------------------


def _verify(host: Host, target: HostTarget) -> None:
    verify_from_here(host.report, target.name, target.address)
    verify_on_host(host)


def _first_failed_check(report: HostReport) -> str:
    failed = [r for r in report.results if r.failed]
    return f"{failed[0].step}: {failed[0].detail}" if failed else ""


def host_part(
    run: ClassRun, target: HostTarget, instance: dict, row: StudentRow, progress: Progress
) -> list[str] | None:
    """provision → deploy → verify (→ auto-stop when asked) over one SSH connection; fills the row.

    Returns the auto-stop lines when auto-stop was set here, else None.
    """
    choice = deploy.ServerChoice("c", False)
    report = HostReport()
    current = ["provision"]
    auto_stopped: list[tuple[list[str], str, str]] = []
    steps: list[tuple[str, Callable[[Host], object]]] = [
        ("provision", lambda h: provision(h, run.host_options)),
        ("deploy", lambda h: deploy.deploy_echo(h, choice)),
        ("verify", lambda h: _verify(h, target)),
    ]

    def job(host: Host) -> None:
        for phase, step in steps:
            run.scope.check()
            current[0] = phase
            progress.set(row.student, phase, RUNNING)
            step(host)
            if phase != "verify":
                setattr(row, phase, DONE)
                progress.set(row.student, phase, DONE)
        if run.auto_stop is not None and not run.scope.cancelled:
            auto_stopped.append(autostop.over_connection(run, instance, row.student, host))

    progress.set(row.student, "provision", RUNNING)
    run_on_host(target, job, report, run.scope, options=run.host_options)
    if report.errors and run.scope.cancelled:
        mark_interrupted(row, current[0])
        return None
    if report.errors:
        _fail(row, progress, current[0], next(iter(report.errors.values())))
        return None
    problem = _first_failed_check(report)
    row.verify = FAIL if problem else PASS
    row.error = f"verify: {problem}" if problem else ""
    progress.set(row.student, "verify", FAILED if problem else DONE)
    if not auto_stopped:
        return None
    lines, row.auto_stop, error = auto_stopped[0]
    row.error = row.error or (f"auto-stop: {error}" if error else "")
    return lines


def _fail(row: StudentRow, progress: Progress, phase: str, message: str) -> None:
    setattr(row, phase, FAIL if phase == "verify" else FAILED)
    row.error = f"{phase}: {message}"
    progress.set(row.student, phase, FAILED)


def mark_interrupted(row: StudentRow, phase: str | None) -> None:
    """Mark the phase Ctrl-C stopped (None: the student had not started)."""
    if phase is None:
        row.error = "not started: interrupted (Ctrl-C)"
        return
    setattr(row, phase, INTERRUPTED)
    row.error = f"{phase}: interrupted (Ctrl-C); re-run to finish"


def _ssh_command(address: str, key_file: Path | None) -> str:
    return f"ssh -i {key_file} ubuntu@{address}" if key_file else f"ssh ubuntu@{address}"


def run_student(
    run: ClassRun, student: Student, progress: Progress, row: StudentRow | None = None
) -> StudentOutcome:
    """The whole pipeline of one student (filling `row`); an expected failure ends only this student."""
    row = row or StudentRow(student.id, student_lab(run.ref.lab, student.id))
    try:
        outcome = _student_pipeline(run, student, progress, row)
    except Exception as exc:  # a bug must not hide the other students' results: report it in the row
        outcome = StudentOutcome(row)
        failed_phase = next((p for p in PHASES if progress.states[student.id][p] == RUNNING), "cloud")
        message = f"unexpected {type(exc).__name__}: {exc} (please report this)"
        _fail(outcome.row, progress, failed_phase, message)
        _finished(outcome)
    outcome.row.seconds = progress.timings(student.id)
    return outcome


def _student_pipeline(run: ClassRun, student: Student, progress: Progress, row: StudentRow) -> StudentOutcome:
    outcome = StudentOutcome(row)
    progress.set(student.id, "cloud", RUNNING)
    try:
        instance, key_file, outcome.cloud_results = cloud_part(run, student)
    except LabError as exc:
        _fail(row, progress, "cloud", str(exc))
        return _finished(outcome)
    address = instance.get("PublicIpAddress") or ""
    row.instance_id, row.address, row.key_file = instance["InstanceId"], address, str(key_file or "")
    row.ssh_command = _ssh_command(address, key_file) if address else ""
    row.cloud = DONE
    progress.set(student.id, "cloud", DONE)
    if run.cloud_only or key_file is None:
        _skip_host_part(row, progress, run.cloud_only)
        return _finished(outcome)
    if run.scope.cancelled:
        mark_interrupted(row, "provision")
        return _finished(outcome)
    try:  # pins the host keys from the console: never for --cloud-only
        target = replace(targets.host_target(run.cloud, instance, str(key_file)), name=student.id)
    except LabError as exc:
        _fail(row, progress, "provision", str(exc))
        return _finished(outcome)
    outcome.auto_stop_lines = host_part(run, target, instance, row, progress)
    return _finished(outcome)


def _skip_host_part(row: StudentRow, progress: Progress, cloud_only: bool) -> None:
    if not cloud_only:
        row.error = "imported public key without its private key here: the student runs the host steps"
    for phase in PHASES[1:]:
        setattr(row, phase, SKIPPED)
        progress.set(row.student, phase, SKIPPED)


def _finished(outcome: StudentOutcome) -> StudentOutcome:
    outcome.row.finished_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return outcome


# --- the class --------------------------------------------------------------------------------------------


def _record_class(run: ClassRun, options: ClassOptions, recorded: LabState) -> None:
    state = recorded.for_lab(run.ref.target, run.ref.region, run.ref.lab, run.cloud.endpoint_url)
    state.mode = CLASS_MODE
    state.students = [s.id for s in options.students]
    state.shared_sg = options.shared_sg
    state.save()


def _shared_group(run: ClassRun, options: ClassOptions, out: TextIO) -> str:
    sources = sorted({run.operator_cidr} | {s.cidr for s in options.students if s.cidr})
    with aws_errors():
        results, group_id = security_group.ensure_security_group(
            run.cloud.ec2, shared_group_lab(run.ref.lab), run.vpc_id, sources, tags=class_tags(run.ref.lab)
        )
    for result in results:
        print(f"  {result.status:<12} {result.resource}: {result.message}", file=out)
    return group_id or ""


def _prepare(
    ref: LabRef,
    recorded: LabState,
    cloud: targets.Cloud,
    options: ProvisionOptions,
    class_options: ClassOptions,
    host_options: HostOptions,
    out: TextIO,
    sandbox_was_running: bool,
) -> ClassRun:
    """Check the inputs, record the class and make the shared group when asked. Inputs the cloud refuses
    (e.g. a type the sandbox's EC2 does not know) stop a sandbox daemon started for this run: nothing exists
    yet."""
    try:
        run = shared.class_inputs(ref, options, host_options, cloud, out)
    except LabError:
        targets.stop_unused_sandbox(ref.target, sandbox_was_running)
        raise
    room = None
    with aws_errors():  # issue 14: the class must fit the vCPU quota before anything is created
        if cloud.target == "aws":  # the sandbox has no quotas
            room = quota.check_vcpu_room(
                cloud.ec2,
                cloud.quotas(),
                ref.region,
                run.instance_type,
                len(class_options.students),
                tagged(CLASS_KEY, ref.lab),
            )
    if room:
        print(f"warning: {room}", file=out, flush=True)
    _record_class(run, class_options, recorded)
    if class_options.shared_sg:
        run = replace(run, shared_group_id=_shared_group(run, class_options, out))
    return run


def _to_run(students: tuple[Student, ...], previous: dict[str, StudentRow], redo_all: bool) -> list[Student]:
    if redo_all:
        return list(students)
    return [s for s in students if previous.get(s.id, StudentRow(s.id, "")).verify != PASS]


def provision_class(
    options: ProvisionOptions,
    class_options: ClassOptions,
    host_options: HostOptions | None = None,
    out: TextIO | None = None,
    tty: bool | None = None,
) -> list[StudentRow]:
    """`fab provision --students/--count`: every student's lab, in parallel; LabError naming the failed ones.

    `options.name` is the class; its `dry_run` only plans (labctl.classmode.plan), its `auto_stop` sets
    auto-stop on every student's instance (labctl.classmode.autostop). Ctrl-C stops the run within
    seconds, writes the report and raises LabInterrupted naming what exists.
    """
    out = out or sys.stdout
    recorded = LabState.load()
    ref = resolve_lab(options.target, options.region, options.name, recorded)
    for student in class_options.students:
        student_lab(ref.lab, student.id)
    dry_run = " dry run: nothing is changed" if options.dry_run else ""
    print(
        header("plan" if dry_run else "provision", ref.target, ref.region, ref.lab)
        + f" (class mode: {len(class_options.students)} students{';' if dry_run else ''}{dry_run})",
        file=out,
        flush=True,
    )
    previous = load_rows(ref.lab)
    to_run = _to_run(class_options.students, previous, class_options.redo_all)
    skipped = [s.id for s in class_options.students if s not in to_run]
    if skipped:
        print(f"  skipped (their last verify passed; --all runs them again): {', '.join(skipped)}", file=out)
    if options.dry_run:
        plan.plan_class(ref, options, class_options, host_options or HostOptions(), to_run, out)
        return [previous[s.id] for s in class_options.students if s.id in previous]
    if not to_run and options.auto_stop is None:
        return _finish(ref, class_options, dict(previous), [], out, [])
    rows = dict(previous)
    cloud = None
    sandbox_was_running = targets.sandbox_running(ref.target)
    try:
        cloud = targets.connect(ref.target, ref.region)
        assert cloud is not None  # start_sandbox=True always gives a cloud
        host_options = host_options or HostOptions()
        run = _prepare(ref, recorded, cloud, options, class_options, host_options, out, sandbox_was_running)
        auto_stop_failed = _provision_students(run, options, class_options, to_run, rows, out, tty)
    except KeyboardInterrupt:
        _finish_interrupted(ref, cloud, class_options, rows, previous, to_run, out)
    return _finish(ref, class_options, rows, [s.id for s in to_run], out, auto_stop_failed)


def _provision_students(
    run: ClassRun,
    options: ProvisionOptions,
    class_options: ClassOptions,
    to_run: list[Student],
    rows: dict[str, StudentRow],
    out: TextIO,
    tty: bool | None,
) -> list[str]:
    """The students' pipelines, then auto-stop when asked (rows updated in place, also on Ctrl-C).

    Returns the students whose auto-stop failed.
    """
    done = _run_students(run, to_run, class_options.parallel, out, tty, rows) if to_run else {}
    if options.auto_stop is None:
        return []
    return autostop.apply_class_auto_stop(run, class_options, options.auto_stop, rows, out, done)


def _run_students(
    run: ClassRun,
    students: list[Student],
    parallel: int,
    out: TextIO,
    tty: bool | None,
    rows: dict[str, StudentRow],
) -> dict[str, list[str]]:
    """Every student's pipeline on the bounded pool, rows into `rows` (on Ctrl-C marked interrupted).

    Returns the auto-stop lines of the students whose pipeline set auto-stop over its connection.
    """
    progress = CancellableProgress(run.scope, [s.id for s in students], PHASES, out, tty)
    progress.start()
    live = {s.id: StudentRow(s.id, student_lab(run.ref.lab, s.id)) for s in students}
    try:
        outcomes = run_bounded(
            students, lambda s: run_student(run, s, progress, live[s.id]), parallel, run.scope
        )
    except KeyboardInterrupt:
        rows.update(_interrupted_rows(students, live, progress))
        raise
    finished = [o for o in outcomes if o is not None]
    for line in cloud_change_lines(finished):
        print(line, file=out)
    rows.update(live)
    return {o.row.student: o.auto_stop_lines for o in finished if o.auto_stop_lines is not None}


def _interrupted_rows(
    students: list[Student], live: dict[str, StudentRow], progress: CancellableProgress
) -> dict[str, StudentRow]:
    """Copies of the students' rows at Ctrl-C: finished ones as they are, the others marked interrupted."""
    rows = {}
    for student in students:
        row = replace(live[student.id])
        if not row.finished_at:
            mark_interrupted(row, progress.running_phase(student.id))
        rows[student.id] = row
    return rows


def cloud_change_lines(outcomes: list[StudentOutcome]) -> list[str]:
    """What the cloud part created, changed or started, per student (or that it changed nothing)."""
    lines = [
        f"  {o.row.student}: {r.status} {r.resource}"
        for o in outcomes
        for r in o.cloud_results
        if r.is_change
    ]
    return lines or ["  cloud: nothing to do, every student's key pair, security group and instance exist"]


def _write_and_show(
    ref: LabRef, class_options: ClassOptions, rows: dict[str, StudentRow], out: TextIO
) -> list[StudentRow]:
    ordered = [rows[s.id] for s in class_options.students if s.id in rows]
    json_path, csv_path = write_report(ref.lab, ref.target, ref.region, ordered)
    print(report_table(ordered), file=out)
    print(f"report: {json_path} and {csv_path}", file=out, flush=True)
    return ordered


def _finish(
    ref: LabRef,
    class_options: ClassOptions,
    rows: dict[str, StudentRow],
    ran: list[str],
    out: TextIO,
    auto_stop_failed: list[str],
) -> list[StudentRow]:
    ordered = _write_and_show(ref, class_options, rows, out)
    failed = [r.student for r in ordered if r.student in ran and r.error and SKIPPED not in r.provision]
    failed += [student for student in auto_stop_failed if student not in failed]
    if failed:
        raise LabError(
            f"class {ref.lab}: {len(failed)} of {len(set(ran) | set(failed))} students failed "
            f"({', '.join(failed)}); see the ERROR column, fix, and re-run the same command to retry "
            "only them"
        )
    if not ran:
        print("nothing to do: every student's last verify passed (--all runs them again)", file=out)
    return ordered


def _finish_interrupted(
    ref: LabRef,
    cloud: targets.Cloud | None,
    class_options: ClassOptions,
    rows: dict[str, StudentRow],
    previous: dict[str, StudentRow],
    to_run: list[Student],
    out: TextIO,
) -> None:
    """After Ctrl-C: the report (interrupted students marked), then LabInterrupted naming what exists."""
    for student in to_run:  # a student whose row is still last run's never started in this one
        if student.id not in rows or rows[student.id] is previous.get(student.id):
            row = replace(rows.get(student.id) or StudentRow(student.id, student_lab(ref.lab, student.id)))
            mark_interrupted(row, None)
            rows[student.id] = row
    ordered = _write_and_show(ref, class_options, rows, out)
    raise interrupt.class_interrupted(ref, cloud, ordered) from None


# --- the fabfile's entry --------------------------------------------------------------------------------


def class_provision(
    students: str | None,
    count: int | str | None,
    parallel: int | str | None = None,
    shared_sg: bool = False,
    redo_all: bool = False,
) -> Callable[..., list[StudentRow]]:
    """`fab provision --students FILE | --count N ...`: a provision function for the fabfile to call."""
    if students and count:
        raise LabError("--students and --count contradict each other: pass only one")
    roster = read_students(students) if students else numbered_students(_as_int("--count", count))
    options = ClassOptions(
        tuple(roster), _as_int("--parallel", parallel or DEFAULT_PARALLEL), shared_sg, redo_all
    )

    def run(provision_options: ProvisionOptions, host_options: HostOptions | None = None) -> list[StudentRow]:
        return provision_class(provision_options, options, host_options)

    return run


def _as_int(flag: str, value: int | str | None) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise LabError(f"{flag} {value!r} is not a whole number") from None
