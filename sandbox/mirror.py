"""This machine's configured Debian mirror, read at run time from its apt sources (never hard-coded)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

from sandbox.errors import SandboxError

APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")


def _one_line_entries(text: str) -> list[tuple[str, list[str]]]:
    """(uri, suites) of each `deb URI SUITE ...` line of a classic sources.list."""
    entries = []
    for line in text.splitlines():
        line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] == "deb":
            entries.append((line[1], [line[2]]))
    return entries


def _deb822_entries(text: str) -> list[tuple[str, list[str]]]:
    """(uri, suites) of each deb822 stanza of a .sources file."""
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            for uri in fields.get("uris", "").split():
                entries.append((uri, fields.get("suites", "").split()))
    return entries


def _all_entries() -> list[tuple[str, list[str]]]:
    entries = []
    if APT_SOURCES.exists():
        entries += _one_line_entries(APT_SOURCES.read_text())
    for path in sorted(APT_SOURCES_DIR.glob("*.list")):
        entries += _one_line_entries(path.read_text())
    for path in sorted(APT_SOURCES_DIR.glob("*.sources")):
        entries += _deb822_entries(path.read_text())
    return entries


def debian_mirror_url(suite: str = "bookworm") -> str:
    """The URL of the mirror this machine's apt uses for `suite` (http(s), any path), no trailing slash."""
    for uri, suites in _all_entries():
        if suite in suites and urlparse(uri).scheme in ("http", "https"):
            return uri.rstrip("/")
    raise SandboxError(
        f"no Debian mirror for '{suite}' found in /etc/apt/sources.list(.d); the sandbox needs this "
        "machine's apt sources to name one"
    )
