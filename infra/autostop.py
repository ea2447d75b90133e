"""Auto-stop on the cloud side: a stopped (not terminated) instance on shutdown, and the deadline as tags.

The tags are the truth `fab status` shows; the host side (`lab.autostop`) schedules the shutdown itself.
Re-running with the same HOURS keeps a deadline that is still ahead (no needless rescheduling); other
HOURS, or a deadline already passed (the instance was started again), set a new deadline from now.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from infra.errors import CloudError

from .results import CHANGED, OK, Result
from .tags import tag_dict

AUTO_STOP_AT_KEY = "labctl:auto-stop-at"
AUTO_STOP_HOURS_KEY = "labctl:auto-stop-hours"
SHUTDOWN_BEHAVIOR = "stop"
MAX_HOURS = 24 * 14


OFF = 0.0  # `--auto-stop off` (or 0): cancel


def validate_hours(hours: float | str) -> float:
    """--auto-stop as hours between 1 minute and two weeks, or OFF for `off`/`0`."""
    if str(hours).strip().lower() in ("off", "0", "0.0"):
        return OFF
    try:
        value = float(hours)
    except (TypeError, ValueError):
        raise CloudError(f"--auto-stop {hours!r} is not a number of hours (e.g. 3 or 0.5, or off)") from None
    if not 1 / 60 <= value <= MAX_HOURS:
        raise CloudError(f"--auto-stop must be between 1/60 and {MAX_HOURS} hours (got {hours})")
    return value


def hours_text(hours: float) -> str:
    return f"{hours:g}"


def format_deadline(deadline: datetime) -> str:
    """ISO 8601 UTC to the second, e.g. `2026-11-26T21:30:00Z`."""
    return deadline.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_deadline(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def recorded_auto_stop(instance: dict) -> tuple[datetime | None, str | None]:
    """(deadline, hours as tagged) from the instance's tags; (None, None) without auto-stop."""
    tags = tag_dict(instance)
    return parse_deadline(tags.get(AUTO_STOP_AT_KEY)), tags.get(AUTO_STOP_HOURS_KEY)


def wanted_deadline(instance: dict, hours: float, now: datetime) -> datetime:
    """The tagged deadline when it was set for the same HOURS and is still ahead, else now + HOURS."""
    deadline, tagged_hours = recorded_auto_stop(instance)
    if deadline is not None and tagged_hours == hours_text(hours) and deadline > now:
        return deadline
    return (now + timedelta(hours=hours)).replace(microsecond=0)


def ensure_stop_on_shutdown(ec2, instance_id: str, dry_run: bool = False) -> Result:
    """InstanceInitiatedShutdownBehavior `stop`: a shutdown inside the instance stops it, never terminates."""
    resource = f"instance {instance_id} shutdown behaviour"
    current = ec2.describe_instance_attribute(
        InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior"
    )["InstanceInitiatedShutdownBehavior"]["Value"]
    if current == SHUTDOWN_BEHAVIOR:
        return Result(OK, resource, SHUTDOWN_BEHAVIOR)
    if not dry_run:
        # Attribute/Value form: moto reads the other form as a (empty) security group change
        ec2.modify_instance_attribute(
            InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior", Value=SHUTDOWN_BEHAVIOR
        )
    return Result(CHANGED, resource, f"{current} -> {SHUTDOWN_BEHAVIOR}", planned=dry_run)


def ensure_deadline_tags(
    ec2, instance: dict, hours: float, now: datetime, dry_run: bool = False
) -> tuple[Result, datetime]:
    """Tag the auto-stop deadline (kept when still valid); returns the result and the deadline."""
    instance_id = instance["InstanceId"]
    deadline = wanted_deadline(instance, hours, now)
    resource = f"instance {instance_id} auto-stop"
    when = f"at {format_deadline(deadline)} ({hours_text(hours)} h)"
    if recorded_auto_stop(instance)[0] == deadline:
        return Result(OK, resource, when), deadline
    if not dry_run:
        ec2.create_tags(
            Resources=[instance_id],
            Tags=[
                {"Key": AUTO_STOP_AT_KEY, "Value": format_deadline(deadline)},
                {"Key": AUTO_STOP_HOURS_KEY, "Value": hours_text(hours)},
            ],
        )
    return Result(CHANGED, resource, when, planned=dry_run), deadline


def ensure_auto_stop(
    ec2, instance: dict, hours: float, now: datetime, dry_run: bool = False
) -> tuple[list[Result], datetime]:
    """Both cloud halves of auto-stop for one instance; returns the results and its deadline."""
    behaviour = ensure_stop_on_shutdown(ec2, instance["InstanceId"], dry_run)
    tagged, deadline = ensure_deadline_tags(ec2, instance, hours, now, dry_run)
    return [behaviour, tagged], deadline


def remove_deadline_tags(ec2, instance: dict, dry_run: bool = False) -> Result:
    """`--auto-stop off`: drop the deadline tags (the shutdown behaviour stays `stop`, EC2's default)."""
    resource = f"instance {instance['InstanceId']} auto-stop"
    if recorded_auto_stop(instance) == (None, None):
        return Result(OK, resource, "off")
    if not dry_run:
        ec2.delete_tags(
            Resources=[instance["InstanceId"]], Tags=[{"Key": AUTO_STOP_AT_KEY}, {"Key": AUTO_STOP_HOURS_KEY}]
        )
    return Result(CHANGED, resource, "cancelled", planned=dry_run)
