"""Which sandbox daemons run on this machine: each registers its pid and state dir under /run/labctl.

A daemon counts as alive while its registered pid runs `sandbox.daemon` (or is still exiting).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from sandbox import network


def registry_dir() -> Path:
    return network.RUN_DIR / "daemons"


def write_json(path: Path, data: dict) -> None:
    """Write `data` atomically with mode 0600."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def register(owner: int, state_dir: Path) -> None:
    registry_dir().mkdir(parents=True, exist_ok=True)
    write_json(registry_dir() / str(owner), {"state_dir": str(state_dir)})


def unregister(owner: int) -> None:
    (registry_dir() / str(owner)).unlink(missing_ok=True)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


PF_EXITING = 0x4  # /proc/PID/stat flags: the process is exiting (its cmdline already reads empty)


def daemon_alive(pid: int) -> bool:
    """A sandbox daemon runs as `pid`, or is still exiting: until it is reaped, its PID cannot be reused,
    but its cmdline reads empty while the kernel tears it down."""
    if not network.pid_alive(pid):
        return False
    cmdline = _cmdline(pid)
    return "sandbox.daemon" in cmdline or (cmdline == "" and _exiting(pid))


def _exiting(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return bool(int(fields[6]) & PF_EXITING)  # field 9 of stat: flags
    except (OSError, IndexError, ValueError):
        return False


def live_daemons() -> dict[int, str]:
    """pid → state dir of every registered daemon that still runs."""
    found = {}
    for path in registry_dir().glob("*") if registry_dir().exists() else ():
        if path.name.isdigit() and daemon_alive(int(path.name)):
            with contextlib.suppress(OSError, ValueError):
                found[int(path.name)] = json.loads(path.read_text()).get("state_dir", "")
    return found
