"""The one line a Ctrl-C in class mode ends with: per student what happened and what exists, how to go on."""

from __future__ import annotations

from infra import instances
from infra.tags import STUDENT_KEY, tag_dict
from labctl import targets
from labctl.classmode.report import StudentRow, report_paths
from labctl.classmode.status import find_class
from labctl.errors import LabInterrupted
from labctl.interrupts import answer_within
from labctl.labref import LabRef


def existing_by_student(ref: LabRef, cloud: targets.Cloud | None) -> dict[str, list[str]]:
    """What the class's tags find now, by student id ('' for the shared security group).

    `cloud`: the run's Cloud; None when Ctrl-C came before it was connected (then a running sandbox is asked).
    """
    if cloud is None:
        cloud = targets.connect(ref.target, ref.region, start_sandbox=False)
    if cloud is None:
        return {}
    found = find_class(cloud.ec2, ref.lab)
    by_student: dict[str, list[str]] = {}

    def add(resource: dict, text: str) -> None:
        by_student.setdefault(tag_dict(resource).get(STUDENT_KEY, ""), []).append(text)

    for instance in found.instances:
        add(instance, f"instance {instance['InstanceId']} ({instances.state_of(instance)})")
    for group in found.groups:
        add(group, f"security group {group['GroupId']}")
    for pair in found.key_pairs:
        add(pair, f"key pair {pair['KeyName']}")
    return by_student


def _look_up(ref: LabRef, cloud: targets.Cloud | None) -> dict[str, list[str]] | str:
    """existing_by_student() within LOOKUP_TIMEOUT seconds, or why not (the API may be what hung)."""
    return answer_within(lambda: existing_by_student(ref, cloud))


def where_it_stopped(row: StudentRow) -> str:
    """`interrupted in provision`, `not started`, `failed in cloud` or `finished` for one report row."""
    phases = ("cloud", "provision", "deploy", "verify")
    interrupted = next((p for p in phases if getattr(row, p) == "interrupted"), None)
    if interrupted:
        return f"interrupted in {interrupted}"
    if row.error.startswith("not started"):
        return "not started"
    if row.error:
        return f"failed in {row.error.split(':', 1)[0]}"
    return "finished"


def _student_part(row: StudentRow, found: dict[str, list[str]] | None) -> str:
    state = where_it_stopped(row)
    if found is None:
        return f"{row.student} ({state})"
    return f"{row.student} ({state}): {', '.join(found.get(row.student, [])) or 'nothing'}"


def class_interrupted(ref: LabRef, cloud: targets.Cloud | None, rows: list[StudentRow]) -> LabInterrupted:
    """The one-line error of an interrupted class run: each student's state and resources, what to do."""
    found = _look_up(ref, cloud)
    known = found if isinstance(found, dict) else None
    parts = [_student_part(row, known) for row in rows]
    if known and known.get(""):
        parts.append(f"shared: {', '.join(known[''])}")
    failed_look_up = (
        f"; could not list what exists ({found}): run `fab status`" if isinstance(found, str) else ""
    )
    return LabInterrupted(
        f"class {ref.lab} interrupted; {'; '.join(parts)}{failed_look_up}; "
        f"report {report_paths(ref.lab)[0]}. "
        "Re-run the same `fab provision` to converge, or `fab teardown` to remove the class"
    )
