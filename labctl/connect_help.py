"""How to connect by hand: the `ssh -i KEY ubuntu@IP` line and the MobaXterm settings the course uses."""

from __future__ import annotations

import os
import shlex
import sys

USER = "ubuntu"
PORT = 22


def is_windows() -> bool:
    return os.name == "nt" or sys.platform in ("win32", "cygwin")


def quote_path(path: str, windows: bool | None = None) -> str:
    """A path as one shell word: double quotes on Windows (cmd and PowerShell), POSIX quoting elsewhere."""
    windows = is_windows() if windows is None else windows
    if windows:
        return f'"{path}"' if any(ch in path for ch in " &()^;,") else path
    return shlex.quote(path)


def ssh_command(
    address: str, key_file: str | None, user: str = USER, port: int = PORT, windows: bool | None = None
) -> str:
    """The OpenSSH command line that logs in as the lab does (paths with spaces quoted)."""
    key = f"-i {quote_path(key_file, windows)} " if key_file else ""
    port_flag = f"-p {port} " if port != PORT else ""
    return f"ssh {key}{port_flag}{user}@{address}"


def mobaxterm_settings(address: str, key_file: str | None, user: str = USER, port: int = PORT) -> dict:
    """MobaXterm's Session → SSH fields, named as the course's screenshots name them."""
    return {
        "remote_host": address,
        "specify_username": user,
        "port": port,
        "private_key": key_file,
    }


def connection_info(address: str | None, key_file: str | None) -> dict | None:
    """The JSON `connect` object of one instance (None without a public address)."""
    if not address:
        return None
    return {
        "ssh_command": ssh_command(address, key_file),
        "mobaxterm": mobaxterm_settings(address, key_file),
    }


def connection_lines(
    instance_id: str, address: str | None, key_file: str | None, several: bool = False
) -> list[str]:
    """The lines printed after provision and in status (`several`: the lab has more than one instance).

    Not indented: a provision report's indented lines are its results.
    """
    if not address:
        return []
    moba = mobaxterm_settings(address, key_file)
    key = moba["private_key"] or "(your own private key)"
    return [
        f"connect to {instance_id}: fab ssh{f' --instance {instance_id}' if several else ''}",
        f"ssh by hand: {ssh_command(address, key_file)}",
        f"MobaXterm: Session > SSH: Remote host {moba['remote_host']}, Specify username "
        f"{moba['specify_username']}, Port {moba['port']}; Advanced SSH settings > Use private key: {key}",
    ]
