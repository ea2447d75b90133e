"""Find and remove what a dead sandbox daemon left behind, recognised only by our marks.

Marks: processes carrying LABCTL_SANDBOX_OWNER=<daemon pid> in their environment (a container's nspawn),
cgroups `labctl/<instance id>` (a container's processes, also when its nspawn died first), netns `labctl-*`,
veths `lxv*`, the bridge `labctl0`, mounts whose source starts with `labctl-`, leases and daemon
registrations in /run/labctl, and disks (sandbox/disk.py) whose host dir is gone. A container's overlay
lives in its launcher's private mount namespace and goes with it.
A daemon counts as alive while its registered pid runs `sandbox.daemon`.

A dead daemon's files are NOT its hosts' disks to lose: its state dir keeps the saved API state
(`apistate`), its log, and the upper dir of every instance that state still has (not terminated), so that the
next daemon brings those instances back. Only host dirs of instances the saved state does not know, or knows
as terminated, are removed (`remove_unowned_host_dirs`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from sandbox import apistate, cgroups, container, disk, host, network
from sandbox.errors import SandboxError
from sandbox.registry import daemon_alive, live_daemons, registry_dir


def _owner_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    prefix = (host.OWNER_ENV + "=").encode()
    for item in environ:
        if item.startswith(prefix):
            with contextlib.suppress(ValueError):
                return int(item[len(prefix) :])
    return None


def _orphan_process_groups(alive: set[int]) -> set[int]:
    groups = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            owner = _owner_of(int(entry))
            dead = owner is not None and owner not in alive and not daemon_alive(owner)  # (started since?)
            if dead and network.pid_alive(int(entry)):
                with contextlib.suppress(OSError):
                    groups.add(os.getpgid(int(entry)))
    return groups


def _live_instances() -> set[str]:
    return {lease.get("instance", "") for lease in network.all_leases() if daemon_alive(lease["owner"])}


def _orphan_mounts() -> list[str]:
    with open("/proc/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[0].startswith("labctl-")]


def cleanup_orphans() -> list[str]:
    """Remove everything of ours whose daemon is gone; return a line per removed thing."""
    if os.geteuid() != 0:
        raise SandboxError("cleaning up sandbox leftovers needs root: run it as root, e.g. with sudo")
    removed: list[str] = []
    alive = set(live_daemons())
    for pgid in sorted(_orphan_process_groups(alive)):
        host.stop_process_group(pgid)
        removed.append(f"process group {pgid}")
    with_cgroups = cgroups.all_instances()  # first: a host started meanwhile has its lease named by then
    live_instances = {i for i in _live_instances() if i}
    for instance_id in sorted(with_cgroups - live_instances):
        container.wait_stopped(instance_id, timeout=0.0)
        removed.append(f"cgroup labctl/{instance_id}")
    cgroups.prune()
    netns_now = network.list_netns()
    live_ids = {network.netns_name(i) for i in _live_instances() if i}
    for netns in netns_now:
        if netns not in live_ids:
            deleted = subprocess.run(["ip", "netns", "del", netns], capture_output=True, text=True)
            if deleted.returncode == 0:
                removed.append(f"netns {netns}")
            elif network.netns_exists(netns):  # (else another cleanup removed it first)
                raise SandboxError(f"`ip netns del {netns}` failed: {deleted.stderr.strip()}")
    veths_now = network.list_veths()
    live_veths = {network.veth_name(i) for i in _live_instances() if i}
    for veth in veths_now:
        if veth not in live_veths:
            subprocess.run(["ip", "link", "del", veth], capture_output=True)
            removed.append(f"veth {veth}")
    for mount_point in reversed(_orphan_mounts()):
        subprocess.run(["umount", "-l", mount_point], capture_output=True)
        removed.append(f"mount {mount_point}")
    removed += _remove_dead_registrations(alive)
    removed += disk.remove_orphans()
    with network.machine_lock():
        for lease in network.all_leases():
            if not daemon_alive(lease["owner"]) and not network.held(lease):
                (network.LEASE_DIR / lease["address"]).unlink(missing_ok=True)
                removed.append(f"lease {lease['address']}")
    if network.remove_bridge_if_unused():
        removed.append(f"bridge {network.BRIDGE}")
    return removed


def remove_unowned_host_dirs(sandbox_dir: Path) -> list[str]:
    """Delete the host dirs of a dead daemon's state dir that belong to no instance its saved API state still
    has (call only once that daemon's hosts are dead); the others, its log and its API state stay."""
    removed = []
    (sandbox_dir / "daemon.json").unlink(missing_ok=True)  # its endpoint answers no more
    keep = apistate.live_saved_instances(sandbox_dir)
    hosts_dir = sandbox_dir / "hosts"
    for host_dir in sorted(hosts_dir.iterdir()) if hosts_dir.is_dir() else ():
        if host_dir.name not in keep:
            disk.remove(host_dir)
            shutil.rmtree(host_dir, ignore_errors=True)
            removed.append(f"files {host_dir} (no live instance)")
    return removed


def _remove_dead_registrations(alive: set[int]) -> list[str]:
    """Registry entries of dead daemons, and the host files of instances they no longer have."""
    removed = []
    served = {Path(state_dir) for state_dir in live_daemons().values()}  # a new daemon may serve it already
    for path in registry_dir().glob("*") if registry_dir().exists() else ():
        if not path.name.isdigit() or int(path.name) in alive or daemon_alive(int(path.name)):
            continue  # alive, also when it started after `alive` was taken
        with contextlib.suppress(OSError, ValueError):
            state_dir = Path(json.loads(path.read_text())["state_dir"])
            if state_dir not in served:
                removed += remove_unowned_host_dirs(state_dir / "sandbox")
                network.reserve_addresses(int(path.name), state_dir / "sandbox")
        path.unlink(missing_ok=True)
        removed.append(f"daemon registration {path.name}")
    return removed
