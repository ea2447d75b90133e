"""What a Ctrl-C in a cloud task leaves behind: the lab's resources found by tags, said in one line."""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

from infra import instances, keys, security_group
from infra.tags import is_ours, resource_name
from labctl.errors import LabInterrupted
from labctl.output import Report
from labctl.state import key_dir


def existing_resources(ec2, lab: str) -> list[str]:
    """Short descriptions of the lab's instances, security groups, key pair and key file that exist now."""
    found = [
        f"instance {i['InstanceId']} ({instances.state_of(i)})" for i in instances.find_instances(ec2, lab)
    ]
    found += [
        f"security group {g['GroupId']} ({g.get('GroupName')})" for g in security_group.find_groups(ec2, lab)
    ]
    pair = keys.describe_key_pair(ec2, resource_name(lab))
    if pair is not None and is_ours(pair, lab):
        found.append(f"key pair {pair['KeyName']}")
    key_file = keys.key_file_path(key_dir(), resource_name(lab))
    if key_file.exists():
        found.append(f"key file {key_file}")
    return found


LOOKUP_TIMEOUT = 10.0
T = TypeVar("T")


def _look_up(ec2, lab: str) -> list[str] | str:
    """existing_resources() within LOOKUP_TIMEOUT seconds, or why not (the API may be what hung)."""
    return answer_within(lambda: existing_resources(ec2, lab))


def answer_within(look: Callable[[], T], timeout: float | None = None) -> T | str:
    """`look()` run on a daemon thread for at most `timeout` (default LOOKUP_TIMEOUT) seconds; else, or if
    it raised, why not. After a Ctrl-C the API call may be what hung, and nothing here may mask the interrupt.
    """
    timeout = LOOKUP_TIMEOUT if timeout is None else timeout
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(look())
        except Exception as exc:  # noqa: BLE001 - any failure here must not mask the interrupt itself
            outcome.append(type(exc).__name__)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    return outcome[0] if outcome else f"no answer in {timeout:g} s"


def _what_exists(ec2, lab: str) -> str:
    """'exists now: ...' from a fresh look-up; a failed look-up says so instead of hiding the interrupt."""
    if ec2 is None:
        return "nothing was created yet"
    found = _look_up(ec2, lab)
    if isinstance(found, str):
        return f"could not list what exists ({found}): run `fab status`"
    return f"exists now: {', '.join(found)}" if found else "nothing of this lab exists"


def provision_interrupted(report: Report, ec2, lab: str) -> LabInterrupted:
    """The one-line error of an interrupted provision: what it did, what exists, how to go on."""
    done = [f"{r.status} {r.resource}" for r in report.results if not r.planned] or ["nothing yet"]
    return LabInterrupted(
        f"interrupted; so far: {'; '.join(done)}; {_what_exists(ec2, lab)}. "
        "Re-run `fab provision` to converge, or `fab teardown` to remove it"
    )


def teardown_interrupted(ec2, lab: str) -> LabInterrupted:
    """The one-line error of an interrupted teardown: what is left and how to remove it."""
    return LabInterrupted(
        f"teardown interrupted; {_what_exists(ec2, lab)}. Run `fab teardown` again to remove the rest"
    )
