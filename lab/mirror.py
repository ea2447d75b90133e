"""apt mirror: point the Ubuntu archive entries at a nearby mirror (mirror.kakao.com by default).

Which hosts are rewritten (a decision, kept in one place): the EC2 regional archive
`<region>.ec2.archive.ubuntu.com` of any region, the plain `archive.ubuntu.com` and the country mirrors
`<cc>.archive.ubuntu.com` (a bring-your-own VM installed from an ISO uses those), plus the lab's default
mirror itself so that a later `--mirror` choice replaces it. Never rewritten: `security.ubuntu.com`
(security updates come from the source), `ports.ubuntu.com`, third-party and Debian entries, comments.
Only active entries change: one-line `deb`/`deb-src` lines, and `URIs:` fields of deb822 stanzas.
"""

from __future__ import annotations

import re

from lab.remote import Host, q
from lab.result import OK, outcome

DEFAULT_MIRROR = "mirror.kakao.com"
ONE_LINE_SOURCES = "/etc/apt/sources.list"
DEB822_SOURCES = "/etc/apt/sources.list.d/ubuntu.sources"
SOURCE_FILES = (ONE_LINE_SOURCES, DEB822_SOURCES)

UBUNTU_ARCHIVE_HOST = re.compile(r"^(?:[a-z0-9-]+\.ec2\.|[a-z]{2}\.)?archive\.ubuntu\.com$")
HOSTNAME_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){HOSTNAME_LABEL}(?:\.{HOSTNAME_LABEL})*$")
URL_HOST = re.compile(r"(?P<scheme>[a-z+]+://)(?P<host>[^/\s:\]]+)")


def is_archive_host(host: str) -> bool:
    """True for the hosts this step moves to the chosen mirror (see the module docstring)."""
    host = host.lower()
    return bool(UBUNTU_ARCHIVE_HOST.match(host)) or host == DEFAULT_MIRROR


def is_valid_mirror(host: str) -> bool:
    return bool(HOSTNAME.match(host))


def replace_hosts(text: str, mirror: str) -> str:
    """Replace the host of every archive URL in `text` with `mirror`."""

    def swap(match: re.Match) -> str:
        if is_archive_host(match["host"]):
            return match["scheme"] + mirror
        return match[0]

    return URL_HOST.sub(swap, text)


def is_one_line_entry(line: str) -> bool:
    words = line.split(None, 1)
    return bool(words) and words[0] in ("deb", "deb-src")


def rewrite_one_line(text: str, mirror: str) -> str:
    """sources.list (one-line format): rewrite archive hosts in `deb`/`deb-src` lines only."""
    lines = text.splitlines(keepends=True)
    return "".join(replace_hosts(line, mirror) if is_one_line_entry(line) else line for line in lines)


def rewrite_deb822(text: str, mirror: str) -> str:
    """*.sources (deb822): rewrite archive hosts in `URIs:` fields (and their continuation lines) only."""
    out = []
    in_uris = False
    for line in text.splitlines(keepends=True):
        if line[:1] in (" ", "\t") and in_uris:
            out.append(replace_hosts(line, mirror))
            continue
        in_uris = line.lower().startswith("uris:")
        out.append(replace_hosts(line, mirror) if in_uris else line)
    return "".join(out)


def rewrite_sources(text: str, mirror: str, path: str) -> str:
    """The sources file at `path` with its archive entries moved to `mirror` (pure: text in, text out)."""
    if path.endswith(".sources"):
        return rewrite_deb822(text, mirror)
    return rewrite_one_line(text, mirror)


def active_hosts(text: str, path: str) -> list[str]:
    """Hosts of the active entries in a sources file, in order, without duplicates."""
    if path.endswith(".sources"):
        lines = deb822_uri_lines(text)
    else:
        lines = [line for line in text.splitlines() if is_one_line_entry(line)]
    hosts: list[str] = []
    for line in lines:
        for match in URL_HOST.finditer(line):
            if match["host"] not in hosts:
                hosts.append(match["host"])
    return hosts


def deb822_uri_lines(text: str) -> list[str]:
    lines = []
    in_uris = False
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and in_uris:
            lines.append(line)
            continue
        in_uris = line.lower().startswith("uris:")
        if in_uris:
            lines.append(line.split(":", 1)[1])
    return lines


def apt_mirror(host: Host, mirror: str, sources: dict[str, str | None]) -> list[str]:
    """Step 3: rewrite each sources file that needs it (one-time `.orig` backup); returns changed paths.

    `sources` is the fact: each of SOURCE_FILES with its text (None when missing).
    """
    changed = []
    for path in SOURCE_FILES:
        current = sources.get(path)
        if current is None:
            continue
        wanted = rewrite_sources(current, mirror, path)
        if wanted != current:
            changed.append(path)
            if not host.dry_run:
                backup_once(host, path)
                host.write_file(path, wanted, sudo=True)
    status = outcome(bool(changed), host.dry_run)
    if status == OK:
        detail = f"no Ubuntu archive entries left to move to {mirror}"
    else:
        detail = f"{', '.join(changed)} -> {mirror}"
    host.record("apt mirror", status, detail)
    return changed


def backup_once(host: Host, path: str) -> None:
    """Copy `path` to `path.orig` unless a backup exists already."""
    host.sudo(f"test -e {q(path)}.orig || cp -p {q(path)} {q(path)}.orig", check=True)
