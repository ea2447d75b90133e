"""Facts: one command and one pure parser each. Steps read facts and change only what differs."""

from __future__ import annotations

import shlex

from lab.remote import Host

ZONEINFO_MARK = "zoneinfo/"


def has_command(host: Host, name: str) -> bool:
    """Whether `name` is on the login user's PATH (or in /usr/sbin, /sbin)."""
    return host.run(f"PATH=$PATH:/usr/sbin:/sbin command -v {shlex.quote(name)}").ok


def systemd_running(host: Host) -> bool:
    """Whether systemd is PID 1 (the test `sd_booted()` uses)."""
    return host.run("test -d /run/systemd/system").ok


def timezone(host: Host) -> str | None:
    """The configured zone name from /etc/localtime's link, else /etc/timezone."""
    out = host.run("readlink /etc/localtime; echo '--'; cat /etc/timezone 2>/dev/null")
    return parse_timezone(out.stdout)


def parse_timezone(stdout: str) -> str | None:
    link, _, tz_file = stdout.partition("--")
    link = link.strip()
    if ZONEINFO_MARK in link:
        return link.split(ZONEINFO_MARK, 1)[1]
    return tz_file.strip() or None


def installed_packages(host: Host, names: list[str]) -> set[str]:
    """Which of `names` dpkg reports as installed."""
    fmt = shlex.quote("${Package} ${db:Status-Abbrev}\\n")
    out = host.run(f"dpkg-query -W -f={fmt} {' '.join(map(shlex.quote, names))} 2>/dev/null")
    return parse_installed(out.stdout)


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
    quoted = " ".join(shlex.quote(n) for n in names)
    out = host.run(f'cd "$HOME"/{shlex.quote(directory)} 2>/dev/null && sha256sum -- {quoted} 2>/dev/null')
    return parse_sha256sum(out.stdout)


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
