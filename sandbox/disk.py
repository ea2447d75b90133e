"""A sandbox host's disk (its overlay's writable `upper/` and `work/` dirs), kept in this machine's memory.

Why memory: the machine's own ext4 makes dpkg slow inside a host. Installing gcc and make took 16.8 s
there and 9.5 s on tmpfs (2026-12-01, benchmarks/RESULTS.md). The kernel spent the difference looking for
free inodes: the root fs has no journal, so ext4 skips recently deleted inodes one by one. A sandbox disk is
thrown away with its instance, so it does not need to outlive this machine.

Layout: one tmpfs (source `labctl_disks`, mode 0700) at /run/labctl/disks, mounted when the first disk is
made and unmounted when the last one is gone, both under the sandbox's machine lock. Each disk is a directory
there with a random name, holding `upper/`, `work/` and `owner` (the host dir it belongs to). A host dir
points at its disk with the symlink `disk`.

The mount belongs to the machine, not to a daemon. So a disk outlives a daemon crash, and the next daemon
boots the saved instance from it. It does not outlive a restart of this machine: attach() then raises
DiskLost, and the reconciler terminates that instance, as EC2 does when an instance's host fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.network import RUN_DIR, machine_lock

DISKS = RUN_DIR / "disks"
MOUNT_SOURCE = "labctl_disks"  # not `labctl-…`: orphan cleanup unmounts those
LINK = "disk"
OWNER_FILE = "owner"


class DiskLost(SandboxError):
    """The host dir points at a disk that no longer exists (this machine restarted)."""


def upper(host_dir: Path) -> Path:
    """The overlay's upper dir of the host (through its `disk` link)."""
    return host_dir / LINK / "upper"


def work(host_dir: Path) -> Path:
    """The overlay's work dir of the host (same filesystem as its upper dir, as overlayfs requires)."""
    return host_dir / LINK / "work"


def lost(host_dir: Path) -> bool:
    """Whether the host had a disk that is gone."""
    link = host_dir / LINK
    return link.is_symlink() and not (Path(os.readlink(link)) / "upper").is_dir()


def attach(host_dir: Path) -> Path:
    """The host's disk, made (empty) on its first boot; DiskLost when it had one that is gone."""
    link = host_dir / LINK
    if lost(host_dir):
        raise DiskLost(f"the disk of {host_dir.name} is gone: this machine restarted since")
    if link.is_symlink():
        return Path(os.readlink(link))
    host_dir.mkdir(parents=True, exist_ok=True)
    with machine_lock():
        _ensure_mounted()
        target = DISKS / secrets.token_hex(8)
        target.mkdir(mode=0o700)
        for sub in ("upper", "work"):
            (target / sub).mkdir(mode=0o755)
        (target / OWNER_FILE).write_text(str(host_dir.resolve()) + "\n")
        link.symlink_to(target)
    return target


def remove(host_dir: Path) -> None:
    """Delete the host's disk and its link (only once nothing of the host runs)."""
    link = host_dir / LINK
    if not link.is_symlink():
        return
    target = Path(os.readlink(link))
    with machine_lock():
        if target.parent == DISKS:
            shutil.rmtree(target, ignore_errors=True)
        link.unlink(missing_ok=True)
        _unmount_if_empty()


def remove_all(sandbox_dir: Path) -> None:
    """Delete a sandbox dir with the disks of all its hosts."""
    hosts = sandbox_dir / "hosts"
    for host_dir in sorted(hosts.iterdir()) if hosts.is_dir() else ():
        remove(host_dir)
    shutil.rmtree(sandbox_dir, ignore_errors=True)


def remove_orphans() -> list[str]:
    """Delete the disks whose host dir is gone or points elsewhere (e.g. a state dir deleted by hand); a line
    per disk. Unmounts the tmpfs when no disk is left."""
    removed = []
    with machine_lock():
        for target in sorted(DISKS.iterdir()) if _mounted() else ():
            try:
                owner = Path((target / OWNER_FILE).read_text().strip())
            except OSError:
                owner = Path("/nonexistent")
            link = owner / LINK
            if not (link.is_symlink() and Path(os.readlink(link)) == target):
                shutil.rmtree(target, ignore_errors=True)
                removed.append(f"disk {target.name} of {owner}")
        _unmount_if_empty()
    return removed


def in_use() -> list[str]:
    """The host dirs that have a disk now (empty when the tmpfs is not mounted)."""
    if not _mounted():
        return []
    owners = []
    for target in sorted(DISKS.iterdir()):
        try:
            owners.append((target / OWNER_FILE).read_text().strip())
        except OSError:
            owners.append(f"(unknown owner of {target.name})")
    return owners


def _mounted() -> bool:
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == str(DISKS) for line in mounts)


def _ensure_mounted() -> None:
    if _mounted():
        return
    DISKS.mkdir(mode=0o700, parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "mode=0700", MOUNT_SOURCE, str(DISKS)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SandboxError(f"could not mount the hosts' disks (tmpfs on {DISKS}): {result.stderr.strip()}")


def _unmount_if_empty() -> None:
    if _mounted() and not any(DISKS.iterdir()):
        subprocess.run(["umount", str(DISKS)], capture_output=True)
