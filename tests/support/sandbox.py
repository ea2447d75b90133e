"""Helpers for the sandbox tests: what of ours exists on this machine, waiting, SSH with pinned host keys."""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import paramiko

from sandbox import cgroups, network
from sandbox.host import OWNER_ENV

SETTLE_TIMEOUT = 10.0


def eventually(check, timeout: float = SETTLE_TIMEOUT, interval: float = 0.05):
    """Call `check` until it returns a truthy value; fail with its last value after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"{check.__name__} never became true"
            return value
        time.sleep(interval)


def tcp_open(address: str, port: int, timeout: float = 1.0) -> bool:
    """True when a TCP connection succeeds; False when refused or timed out (a dropped SYN)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def ping_ok(address: str) -> bool:
    return subprocess.run(["ping", "-c", "1", "-W", "1", address], capture_output=True).returncode == 0


def processes_marked_by(owner: int) -> list[int]:
    """Live processes carrying our owner mark for the daemon `owner`."""
    mark = f"{OWNER_ENV}={owner}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if mark in environ and network.pid_alive(int(entry)):
                found.append(int(entry))
    return found


def ours_on_machine() -> dict[str, list]:
    """Everything of the sandbox that exists on this machine right now."""
    with open("/proc/mounts") as mounts:
        our_mounts = [line.split()[1] for line in mounts if line.split()[0].startswith("labctl-")]
    sshd = subprocess.run(["pgrep", "-f", "labctl-init"], capture_output=True, text=True).stdout.split()
    daemons = subprocess.run(["pgrep", "-f", "sandbox.daemon"], capture_output=True, text=True).stdout.split()
    return {
        "netns": network.list_netns(),
        "veths": network.list_veths(),
        "bridge": [network.BRIDGE] if network.bridge_exists() else [],
        "mounts": our_mounts,
        "hosts": [int(p) for p in sshd if network.pid_alive(int(p))],
        "daemons": [int(p) for p in daemons if network.pid_alive(int(p))],
        "leases": [lease for lease in network.all_leases() if network.held(lease)],
        "cgroups": sorted(cgroups.all_instances()),
    }


def running_in_parallel() -> bool:
    """True under pytest-xdist with more than one worker: other tests' sandboxes may exist right now."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1) > 1


def nothing_of_ours() -> dict[str, list]:
    names = ("netns", "veths", "bridge", "mounts", "hosts", "daemons", "leases", "cgroups")
    return {name: [] for name in names}


def host_keys_from_console(ec2, instance_id: str) -> list[tuple[str, str]]:
    """(type, base64) of each host key the console shows (waiting for cloud-init to print them)."""

    def console_with_keys() -> str:
        output = ec2.get_console_output(InstanceId=instance_id).get("Output", "")
        return output if "-----END SSH HOST KEY KEYS-----" in output else ""

    output = eventually(console_with_keys, timeout=60, interval=0.1)
    block = output.split("-----BEGIN SSH HOST KEY KEYS-----")[1].split("-----END SSH HOST KEY KEYS-----")[0]
    return [tuple(line.split()[:2]) for line in block.splitlines() if line.strip()]


def ssh_client(address: str, key_pem: str, host_keys: list[tuple[str, str]]) -> paramiko.SSHClient:
    """A paramiko client that accepts only the pinned host keys."""
    client = paramiko.SSHClient()
    for key_type, key_b64 in host_keys:
        key = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64))
        client.get_host_keys().add(address, key_type, key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(key_pem))
    client.connect(address, username="ubuntu", pkey=pkey, timeout=10, allow_agent=False, look_for_keys=False)
    return client


def run(client: paramiko.SSHClient, command: str, timeout: float = 120) -> tuple[int, str, str]:
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out, err = stdout.read().decode(), stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err


def fab_in(state_dir: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    """`fab ARGS` from the repository root with LAB_STATE_DIR=`state_dir` (the sandbox target's tests)."""
    return subprocess.run(
        [sys.executable, "-m", "fabric", *args],
        cwd=Path(__file__).resolve().parents[2],
        env=dict(os.environ, LAB_STATE_DIR=str(state_dir)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
