"""Facts: one command and one pure parser each. Steps read facts and change only what differs."""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass

from lab.errors import HostError
from lab.remote import COMMAND_TIMEOUT, Host, q

ZONEINFO_MARK = "zoneinfo/"


TIMEZONE_COMMAND = "readlink /etc/localtime; echo '--'; cat /etc/timezone 2>/dev/null"
SYSTEMD_COMMAND = "test -d /run/systemd/system"
HOME_COMMAND = 'printf %s "$HOME"'


def has_command(host: Host, name: str) -> bool:
    """Whether `name` is on the login user's PATH (or in /usr/sbin, /sbin)."""
    return host.run(f"PATH=$PATH:/usr/sbin:/sbin command -v {shlex.quote(name)}").ok


def systemd_running(host: Host) -> bool:
    """Whether systemd is PID 1 (the test `sd_booted()` uses)."""
    return host.run(SYSTEMD_COMMAND).ok


def timezone(host: Host) -> str | None:
    """The configured zone name from /etc/localtime's link, else /etc/timezone."""
    out = host.run(TIMEZONE_COMMAND)
    return parse_timezone(out.stdout)


def parse_timezone(stdout: str) -> str | None:
    link, _, tz_file = stdout.partition("--")
    link = link.strip()
    if ZONEINFO_MARK in link:
        return link.split(ZONEINFO_MARK, 1)[1]
    return tz_file.strip() or None


def installed_packages(host: Host, names: list[str]) -> set[str]:
    """Which of `names` dpkg reports as installed."""
    return parse_installed(host.run(dpkg_query_command(names)).stdout)


def dpkg_query_command(names: list[str]) -> str:
    fmt = shlex.quote("${Package} ${db:Status-Abbrev}\\n")
    return f"dpkg-query -W -f={fmt} {' '.join(map(shlex.quote, names))} 2>/dev/null"


def parse_installed(stdout: str) -> set[str]:
    """Package names whose dpkg status abbreviation starts with `ii` (installed, no error)."""
    installed = set()
    for line in stdout.splitlines():
        words = line.split()
        if len(words) >= 2 and words[1].startswith("ii"):
            installed.add(words[0].split(":", 1)[0])
    return installed


def os_release(host: Host) -> dict[str, str]:
    return parse_os_release(host.run("cat /etc/os-release").stdout)


def parse_os_release(stdout: str) -> dict[str, str]:
    """/etc/os-release as a dict (quotes removed)."""
    fields = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            fields[key.strip()] = value.strip().strip('"').strip("'")
    return fields


def sha256_manifest(host: Host, directory: str, names: list[str]) -> dict[str, str]:
    """sha256 of each existing file `directory/name` (missing files are absent), in one command."""
    return parse_sha256sum(host.run(sha256_command(directory, names)).stdout)


def sha256_command(directory: str, names: list[str]) -> str:
    quoted = " ".join(shlex.quote(n) for n in names)
    return f'cd "$HOME"/{shlex.quote(directory)} 2>/dev/null && sha256sum -- {quoted} 2>/dev/null'


def parse_sha256sum(stdout: str) -> dict[str, str]:
    """`sha256sum` output as {file name: hex digest}."""
    manifest = {}
    for line in stdout.splitlines():
        digest, sep, name = line.partition("  ")
        if sep and len(digest) == 64:
            manifest[name.lstrip("*")] = digest
    return manifest


def first_line_version(host: Host, command: str) -> str | None:
    """The first line of `command --version`, or None when the program is missing."""
    out = host.run(f"{command} --version 2>/dev/null | head -n 1")
    return out.stdout.strip() or None


# --- many facts in one command ------------------------------------------------------------------------------
# A re-run on a configured host should cost one SSH round trip, not one per fact: a task gathers its facts
# with one small shell script that prints each fact as a section, and parses them here.


@dataclass(frozen=True)
class Section:
    """What one part of a batched script printed on stdout, and its exit status."""

    text: str
    exited: int

    @property
    def ok(self) -> bool:
        return self.exited == 0


def sectioned_script(sections: dict[str, str], boundary: str) -> str:
    """A shell script running each command in turn, its output framed by `boundary` lines."""
    parts = []
    for name, command in sections.items():
        parts.append(
            f"printf '%s\\n' '{boundary}:{name}'\n{{ {command}\n}}\nprintf '\\n%s\\n' \"{boundary}:exit:$?\""
        )
    return "\n".join(parts)


def parse_sections(stdout: str, boundary: str) -> dict[str, Section]:
    """The sections printed by `sectioned_script` (a section that never ended is left out)."""
    found: dict[str, Section] = {}
    rest = stdout
    head = f"{boundary}:"
    while True:
        start = rest.find(head)
        if start < 0:
            return found
        name_end = rest.find("\n", start)
        name = rest[start + len(head) : name_end]
        end = rest.find(f"\n{head}exit:", name_end)
        if name_end < 0 or end < 0:
            return found
        status_start = end + len(head) + 6
        status_end = rest.find("\n", status_start)
        status_end = len(rest) if status_end < 0 else status_end
        found[name] = Section(rest[name_end + 1 : end], int(rest[status_start:status_end] or 1))
        rest = rest[status_end:]


def gather(host: Host, sections: dict[str, str], timeout: int = COMMAND_TIMEOUT) -> dict[str, Section]:
    """Run all `sections` in ONE remote command and return each one's output and exit status."""
    boundary = "@@labctl-" + secrets.token_hex(8)
    out = host.run(sectioned_script(sections, boundary), timeout=timeout)
    found = parse_sections(out.stdout, boundary)
    missing = [name for name in sections if name not in found]
    if missing:
        raise HostError(
            f"{host.name}: reading the host's state stopped at '{missing[0]}' "
            f"(exit {out.exited}: {out.stderr.strip().splitlines()[-1:] or ['no output']}); re-run"
        )
    return found


def file_section(path: str) -> str:
    """A section command printing a file's text (exit 1 when it is missing)."""
    quoted = q(path)
    return f"test -f {quoted} && cat {quoted}"


def file_text(section: Section) -> str | None:
    return section.text if section.ok else None
