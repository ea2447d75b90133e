"""How long an instance has been running (from its LaunchTime), and when that should worry a student."""

from __future__ import annotations

from datetime import datetime, timezone

DEFAULT_WARN_HOURS = 8.0


def utcnow() -> datetime:
    """The current time in UTC (one place, so tests can move the clock)."""
    return datetime.now(timezone.utc)


def launch_time(instance: dict) -> datetime | None:
    """The instance's LaunchTime as an aware UTC datetime (boto3 gives a datetime; strings are parsed)."""
    value = instance.get("LaunchTime")
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def uptime_hours(instance: dict, now: datetime | None = None) -> float | None:
    """Hours since launch for a running instance; None when it is not running or has no LaunchTime."""
    started = launch_time(instance)
    if started is None or instance.get("State", {}).get("Name") != "running":
        return None
    return max(0.0, ((now or utcnow()) - started).total_seconds() / 3600)


def format_hours(hours: float) -> str:
    """`45 min`, `3 h 05 min`, `2 d 4 h`."""
    minutes = int(round(hours * 60))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60:02d} min"
    return f"{minutes // (24 * 60)} d {minutes % (24 * 60) // 60} h"


def validate_warn_hours(hours: float | str | None) -> float:
    """--warn-hours as a positive number of hours (default 8)."""
    if hours is None:
        return DEFAULT_WARN_HOURS
    from infra.errors import CloudError

    try:
        value = float(hours)
    except (TypeError, ValueError):
        raise CloudError(f"--warn-hours {hours!r} is not a number of hours (e.g. 8 or 0.5)") from None
    if value <= 0:
        raise CloudError(f"--warn-hours must be more than 0 (got {hours})")
    return value


def uptime_warning(instance_id: str, hours: float | None, warn_hours: float) -> str | None:
    """One line when an instance has run longer than `warn_hours`, else None."""
    if hours is None or hours < warn_hours:
        return None
    return (
        f"instance {instance_id} has been running for {format_hours(hours)} (more than {warn_hours:g} h): "
        f"it costs money while it runs; `fab teardown` removes the lab (or stop it in the EC2 console)"
    )
