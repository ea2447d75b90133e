"""`fab provision --count N --dry-run` (or `--students FILE --dry-run`): what a class run would do.

Nothing is created, changed or written: no key pair, group, instance, state or report file, and the sandbox
is not started. Each student's cloud part is the single lab's plan (`ensure_key_pair`,
`ensure_security_group` with `dry_run`, `plan_instances`); a student with a running instance gets the
host steps in dry-run mode over SSH (read-only facts, host keys pinned from the console, nothing saved),
a student whose instance would be created or started is told the host steps would run. Students whose
last verify passed are skipped as a real run would skip them (only `--auto-stop` still looks at them).
A summary line counts the labs: `dry run: 3 labs to create, 7 up to date`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO

from infra import console, instances, keys, pinned_keys, security_group
from infra.errors import aws_errors
from infra.results import CREATED, Result
from infra.tags import resource_name
from lab import deploy
from lab.provision import HostOptions, provision
from lab.remote import Host
from lab.result import WOULD_CHANGE, HostReport
from lab.target import HostTarget
from labcore.net import check_connectable
from labctl import cost_report, targets
from labctl.classmode import shared
from labctl.classmode.cancel import run_bounded, run_on_host
from labctl.classmode.report import StudentRow, load_rows
from labctl.classmode.roster import Student
from labctl.classmode.shared import ClassOptions, ClassRun, class_tags, shared_group_lab, student_lab
from labctl.errors import LabError, LabInterrupted
from labctl.hostkeys import parse_host_keys
from labctl.labref import LabRef
from labctl.output import format_result
from labctl.single.auto_stop import cloud_half, host_step
from labctl.state import state_dir

if TYPE_CHECKING:
    from labctl.options import ProvisionOptions

CREATE = "create"
CHANGE = "change"
UP_TO_DATE = "up to date"
SKIP = "skipped"
PROBLEM = "problem"
VERDICTS = (CREATE, CHANGE, UP_TO_DATE, SKIP, PROBLEM)


@dataclass
class StudentPlan:
    """What a class run would do for one student: report lines and one verdict (VERDICTS)."""

    student: str
    lines: list[str] = field(default_factory=list)
    verdict: str = UP_TO_DATE

    def add(self, text: str) -> None:
        self.lines.append(f"  {self.student}: {text}")


def plan_class(
    ref: LabRef,
    options: ProvisionOptions,
    class_options: ClassOptions,
    host_options: HostOptions,
    to_run: list[Student],
    out: TextIO,
) -> list[StudentPlan]:
    """Print every student's plan and the summary line; changes nothing."""
    cloud = targets.connect(ref.target, ref.region, start_sandbox=False)
    if cloud is None:
        print("  the sandbox is not running: provision would start it and create every lab below", file=out)
        plans = [
            _plan_without_cloud(ref.lab, s, options, class_options.shared_sg) for s in class_options.students
        ]
    else:
        plans = _plan_on_cloud(ref, options, class_options, host_options, to_run, cloud, out)
    for plan in plans:
        for line in plan.lines:
            print(line, file=out)
    print(summary_line(plans), file=out, flush=True)
    return plans


def _plan_on_cloud(
    ref: LabRef,
    options: ProvisionOptions,
    class_options: ClassOptions,
    host_options: HostOptions,
    to_run: list[Student],
    cloud: targets.Cloud,
    out: TextIO,
) -> list[StudentPlan]:
    run = shared.class_inputs(ref, options, host_options, cloud, out)
    if cloud.target == "aws":  # the sandbox costs nothing
        print(
            cost_report.plan_line(run.instance_type, run.image, ref.region, len(class_options.students)),
            file=out,
        )
    if class_options.shared_sg:
        run = replace(run, shared_group_id=_print_shared_group_plan(run, class_options, out) or "")
    previous = load_rows(ref.lab)
    students = list(class_options.students)

    def plan(student: Student) -> StudentPlan:
        return plan_student(run, student, student in to_run, options.auto_stop, previous.get(student.id))

    try:
        plans = run_bounded(students, plan, class_options.parallel, run.scope)
    except KeyboardInterrupt:
        raise LabInterrupted("dry run interrupted: nothing was changed") from None
    return [p for p in plans if p is not None]


def _print_shared_group_plan(run: ClassRun, class_options: ClassOptions, out: TextIO) -> str | None:
    """The shared group's plan lines; returns its id (None when it would be created)."""
    sources = sorted({run.operator_cidr} | {s.cidr for s in class_options.students if s.cidr})
    with aws_errors():
        results, group_id = security_group.ensure_security_group(
            run.cloud.ec2, shared_group_lab(run.ref.lab), run.vpc_id, sources, dry_run=True
        )
    for result in results:
        print(f"  shared: {format_result(result).strip()}", file=out)
    return group_id


def _plan_without_cloud(
    class_name: str, student: Student, options: ProvisionOptions, shared_sg: bool
) -> StudentPlan:
    plan = StudentPlan(student.id, verdict=CREATE)
    name = resource_name(student_lab(class_name, student.id))
    planned = [Result(CREATED, f"key pair {name}", planned=True)]
    planned += [] if shared_sg else [Result(CREATED, f"security group {name}", planned=True)]
    planned.append(Result(CREATED, "1 instance(s)", planned=True))
    for result in planned:
        plan.add(format_result(result).strip())
    if not options.cloud_only:
        plan.add("host setup would run every step on the new instance")
    return plan


def plan_student(
    run: ClassRun, student: Student, redo: bool, hours: float | None, previous: StudentRow | None
) -> StudentPlan:
    """One student's plan; an expected problem (e.g. a key pair not ours) becomes a PROBLEM line."""
    plan = StudentPlan(student.id, verdict=UP_TO_DATE if redo else SKIP)
    if not redo:
        plan.add("skipped: its last verify passed (--all would run it again)")
    try:
        _plan_student(run, student, redo, hours, previous, plan)
    except LabError as exc:
        plan.add(f"would fail: {exc}")
        plan.verdict = PROBLEM
    except Exception as exc:  # a bug must not hide the other students' plans: report it in the line
        plan.add(f"could not be planned: unexpected {type(exc).__name__}: {exc} (please report this)")
        plan.verdict = PROBLEM
    if not plan.lines:
        plan.add("up to date")
    return plan


def _plan_student(
    run: ClassRun,
    student: Student,
    redo: bool,
    hours: float | None,
    previous: StudentRow | None,
    plan: StudentPlan,
) -> None:
    lab = student_lab(run.ref.lab, student.id)
    key_file = Path(previous.key_file) if previous and previous.key_file else None
    instance_plan: set[str] = set()  # CREATED and/or STARTED when the instance would be made or started
    with aws_errors():
        if redo:
            results, key_file = plan_cloud(run, student, lab)
            _add_results(plan, results)
            instance_plan = {r.status for r in results if r.planned and "instance" in r.resource}
            plan.verdict = CREATE if CREATED in instance_plan else plan.verdict
        running = instances.find_instances(run.cloud.ec2, lab, ["running"])
        deadline, ask_auto_stop = None, hours is not None and bool(running)
        if ask_auto_stop:
            results, deadline = cloud_half(run.cloud.ec2, running[0], hours, dry_run=True)
            _add_results(plan, results)
    if running and not run.cloud_only and (redo or ask_auto_stop):
        _plan_host(run, running[0], key_file, plan, redo, ask_auto_stop, deadline)
    elif instance_plan and not run.cloud_only:
        plan.add(_host_note(CREATED in instance_plan, hours is not None))


def _host_note(new_instance: bool, auto_stop: bool) -> str:
    """What the host part would do on an instance that does not run yet."""
    then = ", then auto-stop" if auto_stop else ""
    if new_instance:
        return f"host setup would run every step on the new instance{then}"
    return f"host steps would run once the instance has started (only a running one can be checked){then}"


def _add_results(plan: StudentPlan, results: list[Result]) -> None:
    for result in results:
        if result.is_change:
            plan.add(format_result(result).strip())
            plan.verdict = CHANGE if plan.verdict in (UP_TO_DATE, SKIP) else plan.verdict


def plan_cloud(run: ClassRun, student: Student, lab: str) -> tuple[list[Result], Path | None]:
    """The single lab's plan for one student's key pair, security group and instance; returns its key file."""
    key_name = resource_name(lab)
    with tempfile.TemporaryDirectory(prefix="labctl-plan-") as scratch:
        public_key = _public_key_to_read(student, key_name, run.public_key, Path(scratch))
        key_result, key_file = keys.ensure_key_pair(
            run.cloud.ec2, lab, key_name, state_dir() / "keys", public_key, dry_run=True
        )
    results = [key_result]
    group_id = run.shared_group_id or ""
    if run.shared_group_id is None:  # "" is a shared group that would be created
        sources = sorted({run.operator_cidr, student.cidr or run.operator_cidr})
        found, group_id = security_group.ensure_security_group(
            run.cloud.ec2, lab, run.vpc_id, sources, dry_run=True
        )
        results += found
    spec = instances.InstanceSpec(
        lab,
        run.image_id,
        run.instance_type,
        key_name,
        group_id or "",
        1,
        tuple(class_tags(run.ref.lab, student.id).items()),
    )
    return results + instances.plan_instances(run.cloud.ec2, spec), key_file


def _public_key_to_read(student: Student, key_name: str, default: str | None, scratch: Path) -> Path | None:
    """The public key a real run would import; a CSV key given as text goes to `scratch`, not the state."""
    value = student.public_key or default
    if value is None:
        return None
    if not value.startswith(("ssh-", "ecdsa-", "sk-")):
        return Path(value).expanduser()
    path = scratch / f"{key_name}.pub"
    path.write_text(value.strip() + "\n")
    return path


def _plan_host(
    run: ClassRun,
    instance: dict,
    key_file: Path | None,
    plan: StudentPlan,
    redo: bool,
    auto_stop: bool,
    deadline: datetime | None,
) -> None:
    """The host steps in dry-run mode over SSH (read-only facts); the would-change lines go to the plan."""
    if key_file is None or not key_file.exists():
        plan.add("host steps skipped: imported public key without its private key here")
        return
    target = read_only_target(run.cloud, instance, str(key_file), plan.student)
    report = run_on_host(
        target,
        _dry_host_job(run, redo, auto_stop, deadline),
        HostReport(),
        run.scope,
        dry_run=True,
        options=run.host_options,
    )
    if report.errors:
        raise LabError(f"host check failed: {next(iter(report.errors.values()))}")
    for result in report.results:
        if result.status == WOULD_CHANGE or result.failed:
            plan.add(f"host {result.step} {result.status}: {result.detail}")
            plan.verdict = CHANGE if plan.verdict in (UP_TO_DATE, SKIP) else plan.verdict


def _dry_host_job(
    run: ClassRun, redo: bool, auto_stop: bool, deadline: datetime | None
) -> Callable[[Host], None]:
    choice = deploy.ServerChoice("c", False)

    def job(host: Host) -> None:
        if redo:
            provision(host, run.host_options)
            deploy.deploy_echo(host, choice)
        if auto_stop:
            host_step(deadline)(host)

    return job


def read_only_target(cloud: targets.Cloud, instance: dict, key_file: str, name: str) -> HostTarget:
    """A HostTarget with the keys pinned earlier (kept across stops), else those on its console (nothing is
    remembered: a plan writes nothing)."""
    address = instance.get("PublicIpAddress")
    if not address:
        raise LabError(f"instance {instance['InstanceId']} has no public IP address: check its subnet")
    check_connectable(address, cloud.endpoint_url)
    host_keys = pinned_keys.remembered_keys(state_dir(), instance)
    if not host_keys:
        with aws_errors():
            text = console.read_console(cloud.ec2, instance["InstanceId"], instance.get("InstanceType"))
        host_keys = parse_host_keys(text)
    if not host_keys:
        raise LabError(
            f"instance {instance['InstanceId']} has printed no SSH host keys yet: re-run in a minute"
        )
    return HostTarget(
        name=name,
        address=address,
        key_file=key_file,
        host_keys=host_keys,
        target=cloud.target,
        instance_id=instance["InstanceId"],
    )


def summary_line(plans: list[StudentPlan]) -> str:
    """`dry run: 3 labs to create, 1 to change, 7 up to date` (only the verdicts that occur)."""
    counts = {verdict: sum(p.verdict == verdict for p in plans) for verdict in VERDICTS}
    words = {
        CREATE: "{n} lab{s} to create",
        CHANGE: "{n} to change",
        UP_TO_DATE: "{n} up to date",
        SKIP: "{n} skipped (last verify passed)",
        PROBLEM: "{n} would fail (see above)",
    }
    parts = [words[v].format(n=n, s="" if n == 1 else "s") for v, n in counts.items() if n]
    return "dry run: " + ", ".join(parts) + "; nothing was changed"
