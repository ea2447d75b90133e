"""Class mode's `fab status` and `fab teardown` part: every lab of a class, found by the class tag."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra import autostop, instances, keys, security_group
from infra.results import DELETED, Result
from infra.tags import LAB_KEY, STUDENT_KEY, tag_dict
from labctl import status_extras, targets
from labctl.classmode.report import load_rows, report_paths
from labctl.classmode.shared import class_filters
from labctl.state import key_dir


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
        blank = {
            "student": sid,
            "lab": tags.get(LAB_KEY),
            "instances": [],
            "security_group": None,
            "key_pair": None,
        }
        return students.setdefault(sid, blank)

    for instance in found.instances:
        entry(instance)["instances"].append(student_instance(instance))
    for pair in found.key_pairs:
        entry(pair)["key_pair"] = pair["KeyName"]
    shared = None
    for group in found.groups:
        if STUDENT_KEY in tag_dict(group):
            entry(group)["security_group"] = group["GroupId"]
        else:
            shared = {
                "id": group["GroupId"],
                "rules": [r._asdict() for r in security_group.group_rules(group)],
            }
    for sid, item in students.items():
        row = previous.get(sid)
        item.update(last_verify=row.verify if row else None, ssh_command=row.ssh_command if row else None)
    return {
        "students": [students[k] for k in sorted(students)],
        "shared_security_group": shared,
        "report": str(report_paths(class_name)[0]),
    }


def student_instance(instance: dict) -> dict:
    """A student's instance in `fab status --json`: the summary plus uptime and the auto-stop deadline."""
    return dict(instances.summary(instance), **status_extras.lifetime_extras(instance))


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
                f"key {item['key_pair'] or '-'} last verify {item['last_verify'] or '-'}{_auto_stop_text(i)}"
            )
    return lines


def _auto_stop_text(instance: dict) -> str:
    if not instance.get("auto_stop_at"):
        return ""
    return f" auto-stop {instance['auto_stop_at']} ({autostop.hours_text(instance['auto_stop_hours'])} h)"


def teardown_class(cloud: targets.Cloud, class_name: str, keep_key: bool = False) -> list[Result]:
    """Terminate every instance of the class, then delete its groups, key pairs, key files and report."""
    found = find_class(cloud.ec2, class_name)
    results: list[Result] = []
    ids = [i["InstanceId"] for i in found.instances]
    if ids:
        cloud.ec2.terminate_instances(InstanceIds=ids)
        instances.wait_for(cloud.ec2, "instance_terminated", ids)
        results += [Result(DELETED, f"instance {iid}", f"class {class_name}, terminated") for iid in ids]
    results += [security_group.delete_group(cloud.ec2, group) for group in found.groups]
    for pair in found.key_pairs:
        lab = tag_dict(pair).get(LAB_KEY, "")
        results += keys.delete_key_pair(cloud.ec2, lab, pair["KeyName"], key_dir(), keep_key)
        results += _delete_file(key_dir() / f"{pair['KeyName']}.pub", keep_key)
    for path in report_paths(class_name):
        results += _delete_file(path, False)
    return results


def _delete_file(path: Path, keep: bool) -> list[Result]:
    if keep or not path.exists():
        return []
    path.unlink()
    return [Result(DELETED, f"file {path}")]
