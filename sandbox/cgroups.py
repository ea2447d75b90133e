"""One cgroup per booting host, `labctl/<instance id>` in each hierarchy the host uses.

systemd-nspawn with `--keep-unit` boots the container in the cgroup its launcher is in, so the launcher
moves itself into the host's own cgroup first (else every host would share the root cgroup and collide).
This machine's cgroups may be hybrid (v1 `systemd` + v2 `unified`) or pure v2. The memory controller is
joined too where it is a v1 hierarchy, so a host's memory use can be read. Empty directories stay behind
when a container exits: `remove` deletes them (children first, and `labctl` itself once empty).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from sandbox.errors import SandboxError

ROOT = Path("/sys/fs/cgroup")
GROUP = "labctl"


def hierarchies() -> list[Path]:
    """The cgroup roots a host joins: the v2 root (pure v2), or name=systemd + unified + memory (hybrid)."""
    if (ROOT / "cgroup.controllers").exists():
        return [ROOT]
    names = ("systemd", "unified", "memory")
    return [ROOT / name for name in names if (ROOT / name / "cgroup.procs").exists()]


def host_dirs(instance_id: str) -> list[Path]:
    return [root / GROUP / instance_id for root in hierarchies()]


def unified_dir(instance_id: str) -> Path | None:
    """The host's cgroup in the v2 hierarchy (cgroup.kill, cgroup.events), if there is one."""
    for path in host_dirs(instance_id):
        if (path.parent.parent / "cgroup.controllers").exists() or path.parent.parent.name == "unified":
            return path
    return None


def all_instances() -> set[str]:
    """Instance ids that have a cgroup directory in any hierarchy."""
    found = set()
    for root in hierarchies():
        with contextlib.suppress(OSError):  # `labctl` removed meanwhile by the last host's stop
            found |= {entry.name for entry in os.scandir(root / GROUP) if entry.is_dir()}
    return found


def pids(instance_id: str) -> set[int]:
    """Every process in the host's cgroups (all sub-cgroups included)."""
    found: set[int] = set()
    for top in host_dirs(instance_id):
        for directory in _subdirs(top):
            with contextlib.suppress(OSError, ValueError):
                found |= {int(line) for line in (directory / "cgroup.procs").read_text().split()}
    return found


def _subdirs(top: Path) -> list[Path]:
    """`top` and every cgroup below it; ones that vanish during the walk (a host stopping) are skipped."""
    return [Path(directory) for directory, _, _ in os.walk(top)]  # os.walk ignores vanished dirs


def kill(instance_id: str, timeout: float = 5.0) -> None:
    """SIGKILL everything in the host's cgroups and wait until they are empty."""
    unified = unified_dir(instance_id)
    if unified is not None and (unified / "cgroup.kill").exists():
        with contextlib.suppress(OSError):
            (unified / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + timeout
    while True:
        left = pids(instance_id)
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise SandboxError(f"processes {sorted(left)} of host {instance_id} survived SIGKILL")
        time.sleep(0.05)


def prune() -> None:
    """Remove the shared `labctl` directories where no host's cgroup is left (rmdir fails on a busy one)."""
    for root in hierarchies():
        with contextlib.suppress(OSError):
            (root / GROUP).rmdir()


def remove(instance_id: str) -> list[Path]:
    """Delete the host's (empty) cgroup directories, children first; returns the tops removed."""
    removed = []
    for top in host_dirs(instance_id):
        if not top.is_dir():
            continue
        for path in sorted(_subdirs(top)[1:], key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
            removed.append(top)
        with contextlib.suppress(OSError):  # the shared `labctl` dir too, once no host is left in it
            top.parent.rmdir()
    return removed
