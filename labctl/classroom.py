"""Class mode: one lab per student (`fab provision --students FILE` or `--count N`), in parallel.

Each student's lab is an ordinary lab named `<class>-<student>` (key pair, security group, instance),
tagged in addition with the class (the lab `--name`) and the student id, so `fab status` and `fab teardown`
find the whole class by tags. Each student gets an own security group by default (a broken or widened rule
touches one student only, and a student's `cidr` opens only their own lab); `--shared-sg` makes one group
`labctl-<class>--shared` whose rules are the union of the operator's and all students' CIDRs.

Every student runs cloud → provision (host setup) → deploy (echo server) → verify on a bounded thread pool,
over one SSH connection per student. One student's failure never stops the others. The report (one row per
student) is written to the state dir as `class-<name>.json` and `.csv`; a re-run skips students whose last
verify passed (unless `redo_all`) and retries the others.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, TextIO

from infra import ami as amis
from infra import cidr as cidrs
from infra import instances, keys, operator_ip
from infra import security_group as groups
from infra.errors import aws_errors
from infra.results import DELETED, Result
from infra.tags import CLASS_KEY, LAB_KEY, PROJECT_KEY, PROJECT_VALUE, STUDENT_KEY, resource_name, tag_dict
from lab import deploy
from lab import verify as checks
from lab.provision import ProvisionOptions as HostOptions
from lab.provision import provision as provision_host
from lab.remote import Host
from lab.result import Report as HostReport
from labctl import host_tasks, targets
from labctl import state as lab_state
from labctl.errors import LabError
from labctl.hosttarget import HostTarget
from labctl.output import header
from labctl.progress import DONE, FAILED, RUNNING, SKIPPED, Progress
from labctl.roster import Student

PHASES = ("cloud", "provision", "deploy", "verify")
DEFAULT_PARALLEL = 10  # a lab group at once; on AWS the work runs on the instances, here a thread each
PASS = "pass"
FAIL = "fail"
NOT_RUN = "not run"
SHARED_SUFFIX = "--shared"  # student ids start with a letter or digit, so no student lab ends like this


@dataclass(frozen=True)
class ClassOptions:
    """What class mode adds to `fab provision`."""

    students: tuple[Student, ...]
    parallel: int = DEFAULT_PARALLEL
    shared_sg: bool = False
    redo_all: bool = False


@dataclass
class StudentRow:
    """One line of the class report."""

    student: str
    lab: str
    instance_id: str = ""
    address: str = ""
    key_file: str = ""
    ssh_command: str = ""
    cloud: str = NOT_RUN
    provision: str = NOT_RUN
    deploy: str = NOT_RUN
    verify: str = NOT_RUN
    error: str = ""
    finished_at: str = ""
    seconds: str = ""  # how long each phase took in the last run


@dataclass(frozen=True)
class ClassRun:
    """Everything the per-student pipelines share (read-only)."""

    ref: object  # labctl.cloud_tasks.LabRef
    cloud: targets.Cloud
    image_id: str
    vpc_id: str
    operator_cidr: str
    instance_type: str
    public_key: str | None
    cloud_only: bool
    host_options: HostOptions
    shared_group_id: str | None = None


@dataclass
class StudentOutcome:
    row: StudentRow
    cloud_results: list[Result] = field(default_factory=list)


# --- names and tags ---------------------------------------------------------------------------------------


def student_lab(class_name: str, student_id: str) -> str:
    """The lab name of one student's lab, e.g. `netlab-s03` (checked like any lab name)."""
    from labctl.cloud_tasks import validate_lab_name

    lab = f"{class_name}-{student_id}"
    try:
        return validate_lab_name(lab)
    except LabError:
        raise LabError(
            f"student {student_id!r} of class {class_name!r} makes the lab name {lab!r}, longer than 40 "
            "characters: use a shorter --name or shorter student ids"
        ) from None


def shared_group_lab(class_name: str) -> str:
    return f"{class_name}{SHARED_SUFFIX}"


def class_tags(class_name: str, student_id: str | None = None) -> dict[str, str]:
    tags = {CLASS_KEY: class_name}
    if student_id:
        tags[STUDENT_KEY] = student_id
    return tags


def class_filters(class_name: str) -> list[dict]:
    """describe_* filters matching only resources labctl tagged as this class's."""
    return [
        {"Name": f"tag:{PROJECT_KEY}", "Values": [PROJECT_VALUE]},
        {"Name": f"tag:{CLASS_KEY}", "Values": [class_name]},
    ]


# --- the report in the state dir --------------------------------------------------------------------------


def report_paths(class_name: str) -> tuple[Path, Path]:
    base = lab_state.state_dir() / f"class-{class_name}"
    return base.with_suffix(".json"), base.with_suffix(".csv")


def load_rows(class_name: str) -> dict[str, StudentRow]:
    """The last report's rows by student id ({} when there is none or it is unreadable)."""
    path, _ = report_paths(class_name)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    known = {f.name for f in fields(StudentRow)}
    rows = [StudentRow(**{k: v for k, v in row.items() if k in known}) for row in data.get("students", [])]
    return {row.student: row for row in rows}


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_report(class_name: str, target: str, region: str, rows: list[StudentRow]) -> tuple[Path, Path]:
    """Write the class report as JSON and CSV (0600); returns both paths."""
    json_path, csv_path = report_paths(class_name)
    data = {"class": class_name, "target": target, "region": region, "students": [asdict(r) for r in rows]}
    _write_private(json_path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(StudentRow)])
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    _write_private(csv_path, buffer.getvalue())
    return json_path, csv_path


def report_table(rows: list[StudentRow]) -> str:
    """The report as an aligned table: student, instance, address, each phase, ssh command, error."""
    head = ("STUDENT", "INSTANCE", "ADDRESS", "CLOUD", "PROVISION", "DEPLOY", "VERIFY", "SSH", "ERROR")
    table = [head] + [
        (r.student, r.instance_id or "-", r.address or "-", r.cloud, r.provision, r.deploy, r.verify,
         r.ssh_command or "-", r.error)
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    return "\n".join(
        ("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1]).rstrip()
        for row in table
    )


# --- one student's cloud part -----------------------------------------------------------------------------


def _public_key_file(student: Student, key_name: str, default: str | None) -> Path | None:
    """The public key to import for a student: their CSV key (text saved to the state dir, or a path)."""
    value = student.public_key or default
    if value is None:
        return None
    if not value.startswith(("ssh-", "ecdsa-", "sk-")):
        return Path(value).expanduser()
    path = lab_state.key_dir() / f"{key_name}.pub"
    if not path.exists() or path.read_text().strip() != value.strip():
        _write_private(path, value.strip() + "\n")
    return path


def _student_group(run: ClassRun, lab: str, student: Student, results: list[Result]) -> str:
    if run.shared_group_id:
        return run.shared_group_id
    sources = sorted({run.operator_cidr, student.cidr or run.operator_cidr})
    found, group_id = groups.ensure_security_group(
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
            run.cloud.ec2, lab, key_name, lab_state.key_dir(), public_key, tags=tags
        )
        results = [result]
        group_id = _student_group(run, lab, student, results)
        spec = instances.InstanceSpec(
            lab, run.image_id, run.instance_type, key_name, group_id, 1, tuple(tags.items())
        )
        created, described = instances.ensure_instances(run.cloud.ec2, spec)
    return described[0], key_file, results + created


# --- one student's host part ------------------------------------------------------------------------------


def _verify(host: Host, target: HostTarget) -> None:
    checks.verify_from_here(host.report, target.name, target.address)
    checks.verify_on_host(host)


def _first_failed_check(report: HostReport) -> str:
    failed = [r for r in report.results if r.failed]
    return f"{failed[0].step}: {failed[0].detail}" if failed else ""


def host_part(run: ClassRun, target: HostTarget, row: StudentRow, progress: Progress) -> None:
    """provision → deploy → verify over one SSH connection; fills the row's phases and error."""
    choice = deploy.ServerChoice("c", False)
    report = HostReport()
    current = ["provision"]
    steps: list[tuple[str, Callable[[Host], object]]] = [
        ("provision", lambda h: provision_host(h, run.host_options)),
        ("deploy", lambda h: deploy.deploy_echo(h, choice)),
        ("verify", lambda h: _verify(h, target)),
    ]

    def job(host: Host) -> None:
        for phase, step in steps:
            current[0] = phase
            progress.set(row.student, phase, RUNNING)
            step(host)
            if phase != "verify":
                setattr(row, phase, DONE)
                progress.set(row.student, phase, DONE)

    progress.set(row.student, "provision", RUNNING)
    host_tasks.run_on_hosts([target], job, report, options=run.host_options)
    if report.errors:
        _fail(row, progress, current[0], next(iter(report.errors.values())))
        return
    problem = _first_failed_check(report)
    row.verify = FAIL if problem else PASS
    row.error = f"verify: {problem}" if problem else ""
    progress.set(row.student, "verify", FAILED if problem else DONE)


def _fail(row: StudentRow, progress: Progress, phase: str, message: str) -> None:
    setattr(row, phase, FAIL if phase == "verify" else FAILED)
    row.error = f"{phase}: {message}"
    progress.set(row.student, phase, FAILED)


def _ssh_command(address: str, key_file: Path | None) -> str:
    return f"ssh -i {key_file} ubuntu@{address}" if key_file else f"ssh ubuntu@{address}"


def run_student(run: ClassRun, student: Student, progress: Progress) -> StudentOutcome:
    """The whole pipeline of one student; an expected failure ends only this student."""
    try:
        outcome = _student_pipeline(run, student, progress)
    except Exception as exc:  # a bug must not hide the other students' results: report it in the row
        outcome = StudentOutcome(StudentRow(student.id, student_lab(run.ref.lab, student.id)))
        failed_phase = next((p for p in PHASES if progress.states[student.id][p] == RUNNING), "cloud")
        message = f"unexpected {type(exc).__name__}: {exc} (please report this)"
        _fail(outcome.row, progress, failed_phase, message)
        _finished(outcome)
    outcome.row.seconds = progress.timings(student.id)
    return outcome


def _student_pipeline(run: ClassRun, student: Student, progress: Progress) -> StudentOutcome:
    row = StudentRow(student.id, student_lab(run.ref.lab, student.id))
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
    try:  # pins the host keys from the console: never for --cloud-only
        target = replace(targets.host_target(run.cloud, instance, str(key_file)), name=student.id)
    except LabError as exc:
        _fail(row, progress, "provision", str(exc))
        return _finished(outcome)
    host_part(run, target, row, progress)
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


def _record_class(run: ClassRun, options: ClassOptions) -> None:
    previous = lab_state.load_state()
    keep = {k: v for k, v in previous.items() if previous.get("lab") == run.ref.lab}
    keep.update(
        target=run.ref.target, region=run.ref.region, lab=run.ref.lab, endpoint=run.cloud.endpoint_url,
        mode="class", students=[s.id for s in options.students], shared_sg=options.shared_sg,
    )
    lab_state.save_state(keep)


def _shared_group(run: ClassRun, options: ClassOptions, out: TextIO) -> str:
    sources = sorted({run.operator_cidr} | {s.cidr for s in options.students if s.cidr})
    with aws_errors():
        results, group_id = groups.ensure_security_group(
            run.cloud.ec2, shared_group_lab(run.ref.lab), run.vpc_id, sources, tags=class_tags(run.ref.lab)
        )
    for result in results:
        print(f"  {result.status:<12} {result.resource}: {result.message}", file=out)
    return group_id or ""


def _prepare(ref, options, class_options: ClassOptions, host_options: HostOptions, out: TextIO) -> ClassRun:
    """Connect, check the inputs once (image, VPC, CIDR) and make the shared group when asked."""
    cloud = targets.connect(ref.target, ref.region)
    assert cloud is not None  # start_sandbox=True always gives a cloud
    source = cidrs.resolve_source_cidr(
        options.ssh_cidr, options.open_world, cloud.real_aws, lambda: operator_ip.operator_public_ip()
    )
    if source.warning:
        print(f"warning: {source.warning}", file=out, flush=True)
    with aws_errors():
        image = amis.find_ami(cloud.ec2, cloud.ssm, options.release, options.ami)
        vpc_id = groups.default_vpc_id(cloud.ec2, ref.region)
    run = ClassRun(ref, cloud, image["ImageId"], vpc_id, source.cidr, options.instance_type,
                   options.public_key, options.cloud_only, host_options.check())
    _record_class(run, class_options)
    if class_options.shared_sg:
        run = replace(run, shared_group_id=_shared_group(run, class_options, out))
    return run


def _to_run(students: tuple[Student, ...], previous: dict[str, StudentRow], redo_all: bool) -> list[Student]:
    if redo_all:
        return list(students)
    return [s for s in students if previous.get(s.id, StudentRow(s.id, "")).verify != PASS]


def _check_class_options(options, class_options: ClassOptions) -> None:
    if options.dry_run:
        raise LabError("--dry-run is not available in class mode: run `fab status` to see the class")
    if not 1 <= class_options.parallel <= 64:
        raise LabError(f"--parallel {class_options.parallel} is out of range: use 1 to 64")


def provision_class(
    options,
    class_options: ClassOptions,
    host_options: HostOptions | None = None,
    out: TextIO | None = None,
    tty: bool | None = None,
) -> list[StudentRow]:
    """`fab provision --students/--count`: every student's lab, in parallel; LabError naming the failed ones.

    `options` is a labctl.cloud_tasks.ProvisionOptions (its name is the class).
    """
    from labctl.cloud_tasks import resolve_lab

    out = out or sys.stdout
    _check_class_options(options, class_options)
    ref = resolve_lab(options.target, options.region, options.name)
    for student in class_options.students:
        student_lab(ref.lab, student.id)
    print(header("provision", ref.target, ref.region, ref.lab)
          + f" (class mode: {len(class_options.students)} students)", file=out, flush=True)
    previous = load_rows(ref.lab)
    to_run = _to_run(class_options.students, previous, class_options.redo_all)
    skipped = [s.id for s in class_options.students if s not in to_run]
    if skipped:
        print(f"  skipped (their last verify passed; --all runs them again): {', '.join(skipped)}", file=out)
    rows = dict(previous)
    if to_run:
        run = _prepare(ref, options, class_options, host_options or HostOptions(), out)
        rows.update(_run_students(run, to_run, class_options.parallel, out, tty))
    return _finish(ref, class_options, rows, [s.id for s in to_run], out)


def _run_students(
    run: ClassRun, students: list[Student], parallel: int, out: TextIO, tty: bool | None
) -> dict[str, StudentRow]:
    progress = Progress([s.id for s in students], PHASES, out, tty)
    progress.start()
    with ThreadPoolExecutor(max_workers=min(parallel, len(students))) as pool:
        outcomes = list(pool.map(lambda s: run_student(run, s, progress), students))
    for line in cloud_change_lines(outcomes):
        print(line, file=out)
    return {o.row.student: o.row for o in outcomes}


def cloud_change_lines(outcomes: list[StudentOutcome]) -> list[str]:
    """What the cloud part created, changed or started, per student (or that it changed nothing)."""
    lines = [
        f"  {o.row.student}: {r.status} {r.resource}"
        for o in outcomes
        for r in o.cloud_results
        if r.is_change
    ]
    return lines or ["  cloud: nothing to do, every student's key pair, security group and instance exist"]


def _finish(ref, class_options: ClassOptions, rows: dict[str, StudentRow], ran: list[str],
            out: TextIO) -> list[StudentRow]:
    ordered = [rows[s.id] for s in class_options.students if s.id in rows]
    json_path, csv_path = write_report(ref.lab, ref.target, ref.region, ordered)
    print(report_table(ordered), file=out)
    print(f"report: {json_path} and {csv_path}", file=out, flush=True)
    failed = [r.student for r in ordered if r.student in ran and r.error and SKIPPED not in r.provision]
    if failed:
        raise LabError(
            f"class {ref.lab}: {len(failed)} of {len(ran)} students failed ({', '.join(failed)}); "
            "see the ERROR column, fix, and re-run the same command to retry only them"
        )
    if not ran:
        print("nothing to do: every student's last verify passed (--all runs them again)", file=out)
    return ordered


# --- status and teardown ----------------------------------------------------------------------------------


@dataclass
class ClassResources:
    instances: list[dict]
    groups: list[dict]
    key_pairs: list[dict]

    def __bool__(self) -> bool:
        return bool(self.instances or self.groups or self.key_pairs)


def find_class(ec2, class_name: str) -> ClassResources:
    """Our instances (not terminated), security groups and key pairs tagged with this class."""
    filters = class_filters(class_name)
    live = [{"Name": "instance-state-name", "Values": instances.NOT_TERMINATED}]
    pages = ec2.get_paginator("describe_instances").paginate(Filters=filters + live)
    found = [i for page in pages for reservation in page["Reservations"] for i in reservation["Instances"]]
    paginator = ec2.get_paginator("describe_security_groups")
    sgs = [g for page in paginator.paginate(Filters=filters) for g in page["SecurityGroups"]]
    pairs = ec2.describe_key_pairs(Filters=filters)["KeyPairs"]
    return ClassResources(found, sgs, pairs)


def class_status(cloud: targets.Cloud, class_name: str) -> dict | None:
    """The class's labs by student (JSON-ready), or None when no resource carries this class tag."""
    found = find_class(cloud.ec2, class_name)
    if not found:
        return None
    previous = load_rows(class_name)
    students: dict[str, dict] = {}

    def entry(resource: dict) -> dict:
        tags = tag_dict(resource)
        sid = tags.get(STUDENT_KEY, "")
        blank = {"student": sid, "lab": tags.get(LAB_KEY), "instances": [], "security_group": None,
                 "key_pair": None}
        return students.setdefault(sid, blank)

    for instance in found.instances:
        entry(instance)["instances"].append(instances.summary(instance))
    for pair in found.key_pairs:
        entry(pair)["key_pair"] = pair["KeyName"]
    shared = None
    for group in found.groups:
        if STUDENT_KEY in tag_dict(group):
            entry(group)["security_group"] = group["GroupId"]
        else:
            shared = {"id": group["GroupId"], "rules": [r._asdict() for r in groups.group_rules(group)]}
    for sid, item in students.items():
        row = previous.get(sid)
        item.update(last_verify=row.verify if row else None, ssh_command=row.ssh_command if row else None)
    return {"students": [students[k] for k in sorted(students)], "shared_security_group": shared,
            "report": str(report_paths(class_name)[0])}


def class_status_lines(data: dict | None) -> list[str]:
    """`fab status` lines for the class part (none when there is no class)."""
    if not data:
        return []
    lines = [f"  class        {len(data['students'])} student lab(s); report {data['report']}"]
    shared = data["shared_security_group"]
    if shared:
        lines.append(f"  shared SG    {shared['id']} ({len(shared['rules'])} rules)")
    for item in data["students"]:
        found = item["instances"] or [{"id": "-", "state": "no instance", "public_ip": None}]
        for i in found:
            lines.append(
                f"  student      {item['student']:<10} {i['id']} {i['state']} {i['public_ip'] or '-'} "
                f"SG {item['security_group'] or ('shared' if shared else '-')} "
                f"key {item['key_pair'] or '-'} last verify {item['last_verify'] or '-'}"
            )
    return lines


def teardown_class(cloud: targets.Cloud, class_name: str, keep_key: bool = False) -> list[Result]:
    """Terminate every instance of the class, then delete its groups, key pairs, key files and report."""
    found = find_class(cloud.ec2, class_name)
    results: list[Result] = []
    ids = [i["InstanceId"] for i in found.instances]
    if ids:
        cloud.ec2.terminate_instances(InstanceIds=ids)
        instances.wait_for(cloud.ec2, "instance_terminated", ids)
        results += [Result(DELETED, f"instance {iid}", f"class {class_name}, terminated") for iid in ids]
    results += [groups.delete_group(cloud.ec2, group) for group in found.groups]
    for pair in found.key_pairs:
        lab = tag_dict(pair).get(LAB_KEY, "")
        results += keys.delete_key_pair(cloud.ec2, lab, pair["KeyName"], lab_state.key_dir(), keep_key)
        results += _delete_file(lab_state.key_dir() / f"{pair['KeyName']}.pub", keep_key)
    for path in report_paths(class_name):
        results += _delete_file(path, False)
    return results


def _delete_file(path: Path, keep: bool) -> list[Result]:
    if keep or not path.exists():
        return []
    path.unlink()
    return [Result(DELETED, f"file {path}")]



# --- the fabfile's entry --------------------------------------------------------------------------------


def class_provision(
    students: str | None,
    count: int | str | None,
    parallel: int | str | None = None,
    shared_sg: bool = False,
    redo_all: bool = False,
) -> Callable[..., list[StudentRow]]:
    """`fab provision --students FILE | --count N ...`: a provision function for the fabfile to call."""
    from labctl.roster import numbered_students, read_students

    if students and count:
        raise LabError("--students and --count contradict each other: pass only one")
    roster = read_students(students) if students else numbered_students(_as_int("--count", count))
    options = ClassOptions(
        tuple(roster), _as_int("--parallel", parallel or DEFAULT_PARALLEL), shared_sg, redo_all
    )

    def run(provision_options, host_options: HostOptions | None = None) -> list[StudentRow]:
        return provision_class(provision_options, options, host_options)

    return run


def _as_int(flag: str, value: int | str | None) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise LabError(f"{flag} {value!r} is not a whole number") from None
