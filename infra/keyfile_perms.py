"""Private key files readable only by their owner, the way each platform's OpenSSH demands.

POSIX (Linux, macOS): mode 0600. Windows: OpenSSH ignores mode bits and checks the ACL, so inheritance is
removed and only the current user is granted access, with `icacls` (the commands are printed when that fails).
Paths are handled as strings so the Windows branch can be unit-tested on any machine.
"""

from __future__ import annotations

import getpass
import os
import stat
import subprocess
import sys

from infra.errors import CloudError


def is_windows() -> bool:
    return os.name == "nt" or sys.platform == "win32"


def windows_user() -> str:
    """`DOMAIN\\user` as icacls wants it (USERDOMAIN may be missing outside a domain)."""
    user = os.environ.get("USERNAME") or getpass.getuser()
    domain = os.environ.get("USERDOMAIN")
    return f"{domain}\\{user}" if domain else user


def icacls_commands(path: str, user: str) -> list[list[str]]:
    """Drop inherited entries, then grant only `user` full control (replacing any grant it had)."""
    return [["icacls", path, "/inheritance:r"], ["icacls", path, "/grant:r", f"{user}:F"]]


def printable(command: list[str]) -> str:
    """A command as typed in cmd or PowerShell (words with spaces in double quotes)."""
    return " ".join(f'"{word}"' if " " in word else word for word in command)


def restrict_windows(path: str) -> None:
    """icacls the key file; one CloudError with the exact commands when that fails."""
    commands = icacls_commands(path, windows_user())
    for command in commands:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
            failed = done.returncode != 0
            reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        except (OSError, subprocess.TimeoutExpired) as exc:
            failed, reason = True, [str(exc)]
        if failed:
            typed = " && ".join(printable(c) for c in commands)
            raise CloudError(
                f"could not make key file {path} private ({reason[0]}): OpenSSH refuses keys others can "
                f"read; run: {typed}"
            )


def restrict_key_file(path: str | os.PathLike) -> None:
    """Make a private key file owner-only (0600, or the Windows ACL equivalent)."""
    if is_windows():
        restrict_windows(str(path))
    else:
        os.chmod(path, 0o600)


def check_key_file(path: str | os.PathLike) -> None:
    """Refuse a key file that others can read (POSIX mode); on Windows re-apply the owner-only ACL."""
    if is_windows():
        restrict_windows(str(path))
        return
    problem = too_open(path)
    if problem:
        raise CloudError(f"{problem} and re-run")


def too_open(path: str | os.PathLike) -> str | None:
    """`key file P has mode 0644, too open: run `chmod 600 P`` when others may read it (POSIX), else None.

    Never changes anything (for read-only tasks); None on Windows and for a missing file.
    """
    if is_windows():
        return None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return f"key file {path} has mode {mode:04o}, too open: run `chmod 600 {_sh(str(path))}`"


def _sh(path: str) -> str:
    import shlex

    return shlex.quote(path)
