"""Step 4: timezone Asia/Seoul, with timedatectl where systemd runs, else /etc/localtime + /etc/timezone."""

from __future__ import annotations

from lab import facts
from lab.remote import Host, q
from lab.result import outcome
from labctl.errors import LabError

DEFAULT_TIMEZONE = "Asia/Seoul"


def set_timezone_command(zone: str, systemd: bool) -> str:
    """The root command that sets `zone`: timedatectl under systemd, else the symlink and /etc/timezone."""
    if systemd:
        return f"timedatectl set-timezone {q(zone)}"
    zonefile = q(f"/usr/share/zoneinfo/{zone}")
    return f"ln -sfn {zonefile} /etc/localtime && printf '%s\\n' {q(zone)} > /etc/timezone"


def timezone(host: Host, zone: str = DEFAULT_TIMEZONE) -> None:
    """Step 4: set the zone unless it is set already."""
    current = facts.timezone(host)
    needs_change = current != zone
    if needs_change and not host.dry_run:
        if not host.run(f"test -e {q('/usr/share/zoneinfo/' + zone)}").ok:
            raise LabError(f"{host.name}: /usr/share/zoneinfo/{zone} is missing; install tzdata on the host")
        systemd = facts.systemd_running(host)
        host.sudo(set_timezone_command(zone, systemd), check=True)
    detail = f"{current or 'unset'} -> {zone}" if needs_change else zone
    host.record("timezone", outcome(needs_change, host.dry_run), detail)
