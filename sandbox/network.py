"""The sandbox network: one bridge with the gateway 198.51.100.1/24, a netns + veth per host, address leases.

Several daemons (several state dirs) may run at once: they share the bridge, and addresses are leased under a
machine-wide lock in /run/labctl/leases (one file per address, naming its owner's pid). When a daemon stops
or dies, the leases of the instances its saved state still has become reservations for its sandbox dir
(`reserved_for`): no other daemon takes those addresses, and the next daemon of that dir claims them back
(else a restored instance would come back on another lab's host's address). Nothing is routed out:
forwarding is off on the bridge and an `unreachable` route catches the range should the bridge vanish.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

from labcore.net import SANDBOX_GATEWAY, SANDBOX_NETWORK
from sandbox import apistate
from sandbox.errors import SandboxError

BRIDGE = "labctl0"
NETNS_PREFIX = "labctl-"
VETH_PREFIX = "lxv"
RUN_DIR = Path("/run/labctl")
LEASE_DIR = RUN_DIR / "leases"
FIRST_HOST = 10


def run(*command: str, input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command; raise SandboxError with its stderr on failure."""
    result = subprocess.run(command, input=input, capture_output=True, text=True)
    if result.returncode != 0:
        raise SandboxError(f"`{' '.join(command)}` failed: {result.stderr.strip() or result.returncode}")
    return result


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """Serialise bridge and lease changes across all sandbox processes on this machine."""
    RUN_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(RUN_DIR / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def pid_alive(pid: int) -> bool:
    """True for a live process (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def netns_name(instance_id: str) -> str:
    return NETNS_PREFIX + instance_id.removeprefix("i-")


def veth_name(instance_id: str) -> str:
    return VETH_PREFIX + instance_id.removeprefix("i-")[-12:]


# ---- bridge -------------------------------------------------------------------------------------------


def bridge_exists() -> bool:
    return Path(f"/sys/class/net/{BRIDGE}").exists()


def ensure_bridge() -> None:
    """Create the bridge with the gateway address (idempotent); forwarding stays off on it."""
    with machine_lock():
        if not bridge_exists():
            run("ip", "link", "add", BRIDGE, "type", "bridge")
            run("ip", "addr", "add", f"{SANDBOX_GATEWAY}/{SANDBOX_NETWORK.prefixlen}", "dev", BRIDGE)
            _sysctl(f"net/ipv6/conf/{BRIDGE}/disable_ipv6", "1")
            run("ip", "link", "set", BRIDGE, "up")
        _sysctl(f"net/ipv4/conf/{BRIDGE}/forwarding", "0")
        routes = run("ip", "route", "show", "type", "unreachable", str(SANDBOX_NETWORK)).stdout
        if not routes.strip():
            run("ip", "route", "add", "unreachable", str(SANDBOX_NETWORK), "metric", "4000")


def _registered_daemons() -> list[int]:
    """Pids of registered daemons that still run (each keeps the bridge for its apt proxy)."""
    directory = RUN_DIR / "daemons"
    pids = [int(p.name) for p in directory.glob("*") if p.name.isdigit()] if directory.exists() else []
    return [pid for pid in pids if pid_alive(pid)]


def remove_bridge_if_unused(exclude: int | None = None) -> bool:
    """Delete the bridge and the unreachable route when no live process holds a lease and no other daemon
    runs; True if the bridge was removed."""
    with machine_lock():
        if any(pid_alive(lease["owner"]) and lease["owner"] != exclude for lease in _read_leases()):
            return False
        if any(pid != exclude for pid in _registered_daemons()):
            return False
        removed = False
        if bridge_exists():
            run("ip", "link", "del", BRIDGE)
            removed = True
        if run("ip", "route", "show", "type", "unreachable", str(SANDBOX_NETWORK)).stdout.strip():
            run("ip", "route", "del", "unreachable", str(SANDBOX_NETWORK), "metric", "4000")
        return removed


def _sysctl(key: str, value: str) -> None:
    Path("/proc/sys", key).write_text(value)


# ---- leases -------------------------------------------------------------------------------------------


def _read_leases() -> list[dict]:
    leases = []
    for path in sorted(LEASE_DIR.glob("*")) if LEASE_DIR.exists() else ():
        try:
            leases.append(dict(json.loads(path.read_text()), address=path.name))
        except (OSError, ValueError):
            continue
    return leases


def held(lease: dict) -> bool:
    """Whether a lease still holds its address: its owner runs, or it is reserved for a stopped sandbox whose
    saved state still has that instance."""
    if pid_alive(lease["owner"]):
        return True
    reserved_for = lease.get("reserved_for")
    return bool(reserved_for) and lease.get("instance") in apistate.live_saved_instances(Path(reserved_for))


def reserve_addresses(owner: int, sandbox_dir: Path) -> list[str]:
    """`owner` stops (or died): keep its leases of the instances `sandbox_dir`'s saved state still has as
    reservations for that dir, drop the others; returns the reserved addresses."""
    keep = apistate.live_saved_instances(sandbox_dir)
    reserved = []
    with machine_lock():
        for lease in _read_leases():
            if lease["owner"] != owner:
                continue
            path = LEASE_DIR / lease["address"]
            if lease.get("instance") in keep:
                entry = {"owner": owner, "instance": lease["instance"], "reserved_for": str(sandbox_dir)}
                path.write_text(json.dumps(entry))
                reserved.append(lease["address"])
            else:
                path.unlink(missing_ok=True)
    return reserved


def all_leases() -> list[dict]:
    """Every lease on this machine: {address, owner (pid), instance}."""
    return _read_leases()


def lease_address(owner: int, instance: str = "") -> str:
    """Take the lowest free address from .10 up for `owner` (a pid); leases no longer held are reused."""
    with machine_lock():
        LEASE_DIR.mkdir(parents=True, exist_ok=True)
        taken = {lease["address"] for lease in _read_leases() if held(lease)}
        for host in range(FIRST_HOST, SANDBOX_NETWORK.num_addresses - 1):
            address = str(SANDBOX_NETWORK.network_address + host)
            if address not in taken:
                (LEASE_DIR / address).write_text(json.dumps({"owner": owner, "instance": instance}))
                return address
    raise SandboxError(f"the sandbox network {SANDBOX_NETWORK} is full: terminate some instances first")


def claim_address(owner: int, address: str, instance: str) -> bool:
    """Lease `address` for `owner` again (a restarted daemon's restored instance); False when another live
    process holds it, or it is reserved for another instance."""
    with machine_lock():
        LEASE_DIR.mkdir(parents=True, exist_ok=True)
        path = LEASE_DIR / address
        with contextlib.suppress(OSError, ValueError):
            lease = dict(json.loads(path.read_text()), address=address)
            other = lease["owner"] != owner
            if other and (pid_alive(lease["owner"]) or (held(lease) and lease.get("instance") != instance)):
                return False
        path.write_text(json.dumps({"owner": owner, "instance": instance}))
        return True


def release_address(address: str, instance: str | None = None, owner: int | None = None) -> None:
    """Drop the lease of `address`; when `instance` is given only if the lease names it, or names no instance
    yet and is `owner`'s (a reused address is not another instance's to release, nor a lease another daemon
    just took and has not named yet)."""
    with machine_lock(), contextlib.suppress(FileNotFoundError):
        path = LEASE_DIR / address
        if instance is not None:
            with contextlib.suppress(OSError, ValueError):
                lease = json.loads(path.read_text())
                unnamed_mine = lease.get("instance") == "" and lease.get("owner") == owner
                if lease.get("instance") != instance and not unnamed_mine:
                    return
        path.unlink()


# ---- one host's namespace --------------------------------------------------------------------------------


def create_host_network(instance_id: str, address: str) -> str:
    """Namespace + veth on the bridge + address + default route via the gateway; returns the netns name."""
    ipaddress.ip_address(address)
    netns, veth = netns_name(instance_id), veth_name(instance_id)
    delete_host_network(instance_id)
    run("ip", "netns", "add", netns)
    batch = "\n".join(
        [
            f"link add {veth} type veth peer name eth0 netns {netns}",
            f"link set {veth} master {BRIDGE}",
            f"link set {veth} up",
        ]
    )
    run("ip", "-batch", "-", input=batch + "\n")
    ns_batch = "\n".join(
        [
            "link set lo up",
            f"addr add {address}/{SANDBOX_NETWORK.prefixlen} dev eth0",
            "link set eth0 up",
            f"route add default via {SANDBOX_GATEWAY}",
        ]
    )
    run("ip", "-n", netns, "-batch", "-", input=ns_batch + "\n")
    run("ip", "netns", "exec", netns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
    forget_neighbour(address)
    return netns


def forget_neighbour(address: str) -> None:
    """Drop this machine's ARP entry for `address`: a reused address has a new MAC, and a stale entry would
    send the first packets to the old one for up to a minute."""
    subprocess.run(["ip", "neigh", "flush", "to", address, "dev", BRIDGE], capture_output=True)


def netns_exists(netns: str) -> bool:
    return Path("/run/netns", netns).exists()


def delete_host_network(instance_id: str) -> None:
    """Remove the host's veth and namespace (idempotent). Kill the host's processes first."""
    netns, veth = netns_name(instance_id), veth_name(instance_id)
    if Path(f"/sys/class/net/{veth}").exists():
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
    if netns_exists(netns):
        run("ip", "netns", "del", netns)


def list_netns() -> list[str]:
    """Our namespaces (by name prefix)."""
    root = Path("/run/netns")
    return sorted(p.name for p in root.iterdir() if p.name.startswith(NETNS_PREFIX)) if root.exists() else []


def list_veths() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(VETH_PREFIX))
