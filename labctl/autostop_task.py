"""`fab provision --auto-stop HOURS|off`: the cloud half (shutdown behaviour, tags) and the host half."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Callable

from infra import autostop, instances, uptime
from infra.errors import aws_errors
from infra.results import Result
from lab import autostop as host_autostop
from lab.provision import ProvisionOptions as HostOptions
from lab.remote import Host
from lab.result import Report as HostReport
from labctl import host_tasks, targets
from labctl.output import Report


def apply_auto_stop(
    target: str,
    region: str,
    lab: str,
    hours: float | str,
    report: Report,
    *,
    dry_run: bool = False,
    cloud_only: bool = False,
    host_options: HostOptions | None = None,
) -> dict[str, str | None]:
    """Set (or with `off` cancel) auto-stop on the lab's running instances.

    Returns {instance id: deadline as ISO UTC, or None when cancelled}.
    """
    hours = autostop.validate_hours(hours)
    report.line(_heading(hours))
    cloud = targets.connect(target, region, start_sandbox=False)
    if cloud is None:
        report.line("  the sandbox is not running: nothing to set yet")
        return {}
    deadlines = _cloud_half(cloud, lab, hours, dry_run, report)
    if not deadlines:
        return {}
    if cloud_only:
        report.line("  auto-stop: --cloud-only, so the host was not touched (only the tags)")
    else:
        _host_half(cloud, deadlines, dry_run, host_options)
    return {iid: autostop.format_deadline(d) if d else None for iid, d in deadlines.items()}


def _heading(hours: float) -> str:
    if hours == autostop.OFF:
        return "auto-stop off: cancel the deadline and the scheduled shutdown"
    return f"auto-stop after {autostop.hours_text(hours)} h (a deadline set for the same hours stays):"


def _cloud_half(
    cloud: targets.Cloud, lab: str, hours: float, dry_run: bool, report: Report
) -> dict[str, datetime | None]:
    now = uptime.utcnow()
    deadlines: dict[str, datetime | None] = {}
    with aws_errors():
        for instance in instances.find_instances(cloud.ec2, lab, ["running"]):
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
            host_autostop.cancel_auto_stop(host)
        else:
            host_autostop.auto_stop(host, int(deadline.timestamp()), autostop.format_deadline(deadline))

    return step


def _host_half(
    cloud: targets.Cloud,
    deadlines: dict[str, datetime | None],
    dry_run: bool,
    host_options: HostOptions | None,
) -> None:
    hosts = [h for h in targets.host_targets(cloud=cloud) if h.instance_id in deadlines]
    report = HostReport(live=sys.stdout)
    host_tasks.run_on_hosts(
        hosts,
        lambda host: host_step(deadlines[host.name])(host),
        report,
        dry_run=dry_run,
        options=host_options,
    )
    host_tasks.fail_if_errors(report, "auto-stop")
