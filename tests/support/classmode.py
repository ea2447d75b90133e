"""A class for the class-mode tests: its students, and what of it exists (found by the class tags)."""

from __future__ import annotations

import json
from pathlib import Path

from labctl.classmode.roster import Student
from labctl.classmode.shared import class_filters

CLASS = "netlab"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDn1j3UxZ3m0gdB9JNKcAbq6NqYmkV5Mqp5Y2PKn4VLZ student@laptop"
STUDENT_CIDR = "10.20.30.40/32"
STUDENTS = (Student("s01"), Student("s02", public_key=KEY), Student("s03", cidr=STUDENT_CIDR))


def ours(ec2, kind: str) -> list[dict]:
    filters = class_filters(CLASS)
    if kind == "instances":
        running = [{"Name": "instance-state-name", "Values": ["running"]}]
        pages = ec2.describe_instances(Filters=filters + running)
        return [i for r in pages["Reservations"] for i in r["Instances"]]
    if kind == "groups":
        return ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
    return ec2.describe_key_pairs(Filters=filters)["KeyPairs"]


def inventory(ec2) -> dict:
    return {
        "instances": sorted(i["InstanceId"] for i in ours(ec2, "instances")),
        "groups": sorted(
            (g["GroupId"], str(sorted(map(str, g["IpPermissions"])))) for g in ours(ec2, "groups")
        ),
        "keys": sorted(k["KeyName"] for k in ours(ec2, "keys")),
    }


def report(state: Path) -> dict[str, dict]:
    """The rows of the class report `netlab` in the state dir `state`, by student."""
    data = json.loads((state / "class-netlab.json").read_text())
    return {row["student"]: row for row in data["students"]}
