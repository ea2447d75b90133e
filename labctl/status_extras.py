"""What `fab status` adds for students: uptime, the auto-stop deadline, how to connect, cost warnings."""

from __future__ import annotations

from datetime import datetime

from infra import autostop, keyfile_perms, uptime
from labctl import connect_help


def instance_extras(instance: dict, key_file: str | None, now: datetime | None = None) -> dict:
    """The extra JSON keys of one described instance (see infra/STATUS-JSON.md)."""
    running = instance.get("State", {}).get("Name") == "running"
    address = instance.get("PublicIpAddress") if running else None
    return dict(lifetime_extras(instance, now), connect=connect_help.connection_info(address, key_file))


def lifetime_extras(instance: dict, now: datetime | None = None) -> dict:
    """Launch time, uptime and the auto-stop deadline of one described instance (class students too)."""
    started = uptime.launch_time(instance)
    deadline, hours = autostop.recorded_auto_stop(instance)
    return {
        "launch_time": autostop.format_deadline(started) if started else None,
        "uptime_hours": _rounded(uptime.uptime_hours(instance, now)),
        "auto_stop_at": autostop.format_deadline(deadline) if deadline else None,
        "auto_stop_hours": float(hours) if hours else None,
    }


def _rounded(hours: float | None) -> float | None:
    return None if hours is None else round(hours, 2)


def uptime_warnings(instances: list[dict], warn_hours: float, now: datetime | None = None) -> list[str]:
    """One warning per running instance past `warn_hours` (status_data()'s instance dicts)."""
    found = (uptime.uptime_warning(i["id"], exact_uptime_hours(i, now), warn_hours) for i in instances)
    return [warning for warning in found if warning]


def exact_uptime_hours(info: dict, now: datetime | None = None) -> float | None:
    """Uptime from `launch_time` to the second: `uptime_hours` is rounded for display, so a small
    --warn-hours compared with it would never fire in an instance's first minute."""
    if info.get("uptime_hours") is None:
        return None
    started = autostop.parse_deadline(info.get("launch_time"))
    if started is None:
        return info["uptime_hours"]
    return max(0.0, ((now or uptime.utcnow()) - started).total_seconds() / 3600)


def instance_lines(info: dict, several: bool = False) -> list[str]:
    """Uptime, auto-stop and connection lines under one instance in `fab status`."""
    lines = []
    if info.get("uptime_hours") is not None:
        hours = uptime.format_hours(info["uptime_hours"])
        lines.append(f"    uptime     {hours} (launched {info['launch_time']})")
    if info.get("auto_stop_at"):
        lines.append(f"    auto-stop  at {info['auto_stop_at']} ({auto_stop_note(info)})")
    connect = info.get("connect")
    if connect:
        lines += [
            "    " + line
            for line in connect_help.connection_lines(
                info["id"], connect["mobaxterm"]["remote_host"], connect["mobaxterm"]["private_key"], several
            )
        ]
    return lines


def warning_lines(data: dict) -> list[str]:
    return [f"  warning: {text}" for text in data.get("warnings") or []]


def add_warnings(data: dict, warn_hours: float | None = None) -> dict:
    """Add `uptime_warn_hours` and `warnings` (uptime past the threshold) to status_data(); returns it."""
    threshold = uptime.validate_warn_hours(warn_hours)
    data["uptime_warn_hours"] = threshold
    data["warnings"] = uptime_warnings(data["instances"], threshold) + key_file_warnings(data)
    return data


def key_file_warnings(data: dict) -> list[str]:
    """A key file others can read: OpenSSH refuses the `ssh -i` line status prints, so say how to fix it."""
    pair = data.get("key_pair") or {}
    problem = keyfile_perms.too_open(pair["file"]) if pair.get("file") else None
    return [f"{problem} (ssh refuses such a key)"] if problem else []


def auto_stop_note(info: dict, now: datetime | None = None) -> str:
    """`2 h after it was set`, or `passed` once the deadline is behind us (a restarted instance)."""
    deadline = autostop.parse_deadline(info["auto_stop_at"])
    if deadline is not None and deadline <= (now or uptime.utcnow()):
        return "passed: re-run fab provision --auto-stop HOURS to set a new one"
    return f"{info['auto_stop_hours']:g} h after it was set" if info.get("auto_stop_hours") else "set"
