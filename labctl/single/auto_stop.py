"""`fab provision --auto-stop HOURS|off`: the cloud half (shutdown behaviour, tags) and the host half.

The cloud half runs on the instances the cloud part just described; the host half is a step of the host
job provision already runs over its one SSH connection per host (`labctl.single.provisioning`). Class mode
uses the same per-instance halves (`cloud_half`, `host_step`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Callable

import lab.autostop
from infra import autostop, uptime
from infra.errors import aws_errors
from infra.results import Result

if TYPE_CHECKING:
    from lab.remote import Host
    from labctl.output import Report
    from labctl.targets import Cloud


def heading(hours: float) -> str:
    if hours == autostop.OFF:
        return "auto-stop off: cancel the deadline and the scheduled shutdown"
    return f"auto-stop after {autostop.hours_text(hours)} h (a deadline set for the same hours stays):"


def cloud_half_of_lab(
    cloud: Cloud | None, running: list[dict], hours: float, dry_run: bool, report: Report
) -> dict[str, datetime | None]:
    """The cloud half on the lab's `running` instances (as just described).

    Returns {instance id: deadline, or None when cancelled}; {} when nothing runs.
    """
    report.line(heading(hours))
    if cloud is None:
        report.line("  the sandbox is not running: nothing to set yet")
        return {}
    now = uptime.utcnow()
    deadlines: dict[str, datetime | None] = {}
    with aws_errors():
        for instance in running:
            results, deadline = cloud_half(cloud.ec2, instance, hours, dry_run, now)
            report.add(results)
            deadlines[instance["InstanceId"]] = deadline
    return deadlines


def cloud_half(
    ec2, instance: dict, hours: float, dry_run: bool = False, now: datetime | None = None
) -> tuple[list[Result], datetime | None]:
    """Shutdown behaviour and deadline tags of one instance (or with OFF the tags removed)."""
    if hours == autostop.OFF:
        return [autostop.remove_deadline_tags(ec2, instance, dry_run)], None
    return autostop.ensure_auto_stop(ec2, instance, hours, now or uptime.utcnow(), dry_run)


def host_step(deadline: datetime | None) -> Callable[[Host], None]:
    """The host half for a Host: schedule the shutdown at `deadline`, or cancel it (None)."""

    def step(host: Host) -> None:
        if deadline is None:
            lab.autostop.cancel_auto_stop(host)
        else:
            lab.autostop.auto_stop(host, int(deadline.timestamp()), autostop.format_deadline(deadline))

    return step


def host_job(deadlines: dict[str, datetime | None]) -> Callable[[Host], None]:
    """The host half on each lab host (named by its instance id), over the connection it is given."""
    return lambda host: host_step(deadlines[host.name])(host)
