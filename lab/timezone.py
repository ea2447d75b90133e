"""Step 4: timezone Asia/Seoul, with timedatectl where systemd runs, else /etc/localtime + /etc/timezone."""

from __future__ import annotations

from dataclasses import dataclass

from lab import facts
from lab.errors import HostError
from lab.remote import Host, q
from lab.result import outcome

DEFAULT_TIMEZONE = "Asia/Seoul"


def set_timezone_command(zone: str, systemd: bool) -> str:
    """The root command that sets `zone`: timedatectl under systemd, else the symlink and /etc/timezone."""
    if systemd:
        return f"timedatectl set-timezone {q(zone)}"
    zonefile = q(f"/usr/share/zoneinfo/{zone}")
    return f"ln -sfn {zonefile} /etc/localtime && printf '%s\\n' {q(zone)} > /etc/timezone"


@dataclass(frozen=True)
class ZoneFacts:
    """What the step needs to know: the current zone, whether the wanted zone's file exists, systemd."""

    current: str | None
    zoneinfo_exists: bool
    systemd: bool


def fact_commands(zone: str) -> dict[str, str]:
    """The commands whose output `parse_zone_facts` reads (run in one batch)."""
    return {
        "timezone": facts.TIMEZONE_COMMAND,
        "zoneinfo": f"test -e {q('/usr/share/zoneinfo/' + zone)}",
        "systemd": facts.SYSTEMD_COMMAND,
    }


def parse_zone_facts(sections: dict[str, facts.Section]) -> ZoneFacts:
    return ZoneFacts(
        facts.parse_timezone(sections["timezone"].text),
        sections["zoneinfo"].ok,
        sections["systemd"].ok,
    )


def timezone(host: Host, zone: str, found: ZoneFacts) -> None:
    """Step 4: set the zone unless it is set already."""
    current = found.current
    needs_change = current != zone
    if needs_change and not host.dry_run:
        if not found.zoneinfo_exists:
            raise HostError(f"{host.name}: /usr/share/zoneinfo/{zone} is missing; install tzdata on the host")
        host.sudo(set_timezone_command(zone, found.systemd), check=True)
    detail = f"{current or 'unset'} -> {zone}" if needs_change else zone
    host.record("timezone", outcome(needs_change, host.dry_run), detail)
