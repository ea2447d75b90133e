"""The local `ping` of `fab verify`, spelled for the operator's platform (flags differ per OS).

Linux (iputils): -c count, -i seconds between requests (0.2 is the least a non-root user may ask for; the
default 1 s made `fab verify` wait a second for the second reply), -W per-reply seconds, -w overall seconds.
macOS/BSD: -c count, -W per-reply milliseconds, -t overall seconds.
Windows: -n count, -w per-reply milliseconds; exit status 0 even for "Destination host unreachable"
answered by a router, so a reply is recognised by its `TTL=`.
"""

from __future__ import annotations

import os
import sys

COUNT = 2
REPLY_SECONDS = 2
TOTAL_SECONDS = 5
LINUX_INTERVAL = "0.2"


def platform_name(os_name: str | None = None, platform: str | None = None) -> str:
    """`windows`, `bsd` (macOS and the BSDs) or `linux`."""
    os_name = os_name or os.name
    platform = platform or sys.platform
    if os_name == "nt" or platform.startswith(("win", "cygwin")):
        return "windows"
    if platform.startswith(("darwin", "freebsd", "openbsd", "netbsd")):
        return "bsd"
    return "linux"


def ping_command(address: str, kind: str | None = None) -> list[str]:
    """Two echo requests, a short wait per reply and (where supported) an overall limit."""
    kind = kind or platform_name()
    if kind == "windows":
        return ["ping", "-n", str(COUNT), "-w", str(REPLY_SECONDS * 1000), address]
    if kind == "bsd":
        reply_ms = str(REPLY_SECONDS * 1000)
        return ["ping", "-n", "-c", str(COUNT), "-W", reply_ms, "-t", str(TOTAL_SECONDS), address]
    return [
        "ping",
        *("-n", "-c", str(COUNT), "-i", LINUX_INTERVAL),
        *("-W", str(REPLY_SECONDS), "-w", str(TOTAL_SECONDS), address),
    ]


def got_reply(returncode: int, stdout: str, kind: str | None = None) -> bool:
    kind = kind or platform_name()
    if kind == "windows":
        return returncode == 0 and "TTL=" in stdout.upper()
    return returncode == 0


def summary(stdout: str) -> str:
    """The loss line (`2 packets transmitted, 2 received, 0% packet loss` / Windows' `Lost = 0 (0% loss)`)."""
    for line in stdout.splitlines():
        if "packet loss" in line or "Lost =" in line:
            return line.strip()
    return "replied"


def install_hint(kind: str | None = None) -> str:
    kind = kind or platform_name()
    if kind == "linux":
        return "ping is not installed on this machine (apt-get install iputils-ping)"
    return "ping is not on this machine's PATH (it is part of the operating system: check PATH)"
