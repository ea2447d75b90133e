"""Our tags: the truth about which cloud resources belong to which lab."""

from __future__ import annotations

from collections.abc import Callable

PROJECT_KEY = "labctl:project"
PROJECT_VALUE = "labctl"
LAB_KEY = "labctl:lab"
CLASS_KEY = "labctl:class"  # class mode: the class (lab --name) a student's lab belongs to
STUDENT_KEY = "labctl:student"


def resource_name(lab: str) -> str:
    """The Name tag / group name / key name of a lab's resources, e.g. `labctl-netlab`."""
    return f"labctl-{lab}"


def lab_tags(lab: str) -> dict[str, str]:
    return {PROJECT_KEY: PROJECT_VALUE, LAB_KEY: lab, "Name": resource_name(lab)}


def tag_specifications(resource_type: str, lab: str, extra: dict[str, str] | None = None) -> list[dict]:
    """A TagSpecifications entry that tags a resource with our tags (and `extra`) when it is created."""
    tags = [{"Key": key, "Value": value} for key, value in {**lab_tags(lab), **(extra or {})}.items()]
    return [{"ResourceType": resource_type, "Tags": tags}]


def lab_filters(lab: str) -> list[dict]:
    """describe_* filters that match only resources tagged as this lab's."""
    return [
        {"Name": f"tag:{PROJECT_KEY}", "Values": [PROJECT_VALUE]},
        {"Name": f"tag:{LAB_KEY}", "Values": [lab]},
    ]


def tag_dict(resource: dict) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags") or []}


def is_ours(resource: dict, lab: str) -> bool:
    """True when `resource` carries our project tag and this lab's tag."""
    tags = tag_dict(resource)
    return tags.get(PROJECT_KEY) == PROJECT_VALUE and tags.get(LAB_KEY) == lab


def tagged(key: str, value: str) -> Callable[[dict], bool]:
    """A test for resources carrying tag `key`=`value` (e.g. a class's instances)."""
    return lambda resource: tag_dict(resource).get(key) == value
