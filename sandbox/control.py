"""Start, inspect and stop the sandbox daemon of a state directory: the API the rest of labctl calls.

ensure_running(state_dir, host_kind="systemd") -> "http://127.0.0.1:PORT"   (starts the daemon when needed)
running_endpoint(state_dir) -> str | None
status(state_dir) -> dict   (`down`: the daemon is not running but its saved instances exist: what to do)
has_saved_state(state_dir) -> bool
shutdown_if_idle(state_dir) -> bool
cleanup_orphans() -> list[str]
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sandbox import apistate, disk
from sandbox.errors import SandboxError
from sandbox.orphans import cleanup_orphans
from sandbox.registry import daemon_alive

__all__ = [
    "ensure_running",
    "running_endpoint",
    "status",
    "has_saved_state",
    "shutdown_if_idle",
    "cleanup_orphans",
    "SANDBOX_SSH_CIDR",
]

# The sandbox's clients connect from the bridge address: the operator's /32 in a security group.
SANDBOX_SSH_CIDR = "198.51.100.1/32"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
REQUIRED_COMMANDS = {
    "ip": "iproute2",
    "iptables-restore": "iptables",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "unshare": "util-linux",
    "debootstrap": "debootstrap",
    "chroot": "coreutils",
}
BOOT_COMMANDS = {"systemd-nspawn": "systemd-container"}  # only hosts of kind `systemd` need these
HOST_KINDS = ("systemd", "chroot")
IDLE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")


def sandbox_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "sandbox"


def _daemon_info(state_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((sandbox_dir(state_dir) / "daemon.json").read_text())
    except (OSError, ValueError):
        return {}


def _answers(endpoint: str) -> bool:
    try:
        urllib.request.urlopen(endpoint + "/moto-api/", timeout=2).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def running_endpoint(state_dir: Path) -> str | None:
    """The endpoint URL of this state dir's daemon when it runs and answers, else None."""
    info = _daemon_info(state_dir)
    if info.get("pid") and daemon_alive(int(info["pid"])) and _answers(info.get("endpoint", "")):
        return info["endpoint"]
    return None


def has_saved_state(state_dir: Path) -> bool:
    """The sandbox of this state dir has API state saved by a daemon (running or not)."""
    return apistate.has_saved_state(sandbox_dir(state_dir))


def check_prerequisites(host_kind: str = "systemd") -> None:
    """Raise SandboxError naming what is missing: root, a command (with its apt package) or moto."""
    if os.geteuid() != 0:
        raise SandboxError(
            "the sandbox target needs root (network namespaces, sshd, iptables): run it as root, "
            "e.g. with sudo"
        )
    needed = dict(REQUIRED_COMMANDS, **(BOOT_COMMANDS if host_kind == "systemd" else {}))
    for command, package in needed.items():
        if shutil.which(command, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            raise SandboxError(
                f"the sandbox target needs `{command}`: install it with `apt-get install {package}`"
            )
    if not all(importlib.util.find_spec(name) for name in ("flask", "moto")):  # found, not imported: 0.5 s
        raise SandboxError("the sandbox target needs moto's server: pip install 'labctl[sandbox]'")
    if "overlay" not in Path("/proc/filesystems").read_text():
        raise SandboxError("the sandbox target needs overlayfs in the kernel: run `modprobe overlay`")


@contextlib.contextmanager
def _control_lock(state_dir: Path):
    directory = sandbox_dir(state_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with os.fdopen(os.open(directory / "control.lock", os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_running(state_dir: Path, say=print, host_kind: str = "systemd") -> str:
    """Start this state dir's daemon unless it runs; wait until its API answers; return the endpoint URL.

    `host_kind`: `systemd` (instances boot systemd + cloud-init under systemd-nspawn, as on EC2) or `chroot`
    (a tiny init and sshd, no systemd: for tests that need such a host). A running daemon keeps its kind."""
    if host_kind not in HOST_KINDS:
        raise SandboxError(f"unknown sandbox host kind {host_kind!r}: use one of {', '.join(HOST_KINDS)}")
    state_dir = Path(state_dir).resolve()
    endpoint = running_endpoint(state_dir)
    if endpoint:
        return _same_kind(state_dir, endpoint, host_kind)
    check_prerequisites(host_kind)
    from sandbox.rootfs import ensure_rootfs

    ensure_rootfs(say=say, kind=host_kind)
    with _control_lock(state_dir):
        endpoint = running_endpoint(state_dir)
        if endpoint:
            return _same_kind(state_dir, endpoint, host_kind)
        (sandbox_dir(state_dir) / "daemon.json").unlink(missing_ok=True)
        for line in cleanup_orphans():  # a crashed daemon's hosts would still hold their addresses
            say(f"sandbox: removed orphaned {line}")
        saved = apistate.live_saved_instances(sandbox_dir(state_dir))
        saved_kind = apistate.saved_host_kind(sandbox_dir(state_dir)) or host_kind
        if saved and saved_kind != host_kind:
            raise SandboxError(
                f"the saved sandbox of {state_dir} has {saved_kind} hosts, not {host_kind}: start it with "
                f"host kind {saved_kind}, or tear it down first (fab teardown)"
            )
        if saved:
            say(f"sandbox: restarting from its saved state, bringing back {_describe(saved)}")
        process = _spawn_daemon(state_dir, host_kind)
        endpoint = _wait_for_api(state_dir, process)
    say(f"sandbox: daemon {process.pid} serves the EC2 API at {endpoint}")
    return endpoint


def _same_kind(state_dir: Path, endpoint: str, host_kind: str) -> str:
    running = _daemon_info(state_dir).get("host_kind", "systemd")
    if running != host_kind:
        raise SandboxError(
            f"the sandbox of {state_dir} already runs {running} hosts, not {host_kind}: "
            "tear it down first (fab teardown) or use another state dir"
        )
    return endpoint


def _spawn_daemon(state_dir: Path, host_kind: str) -> subprocess.Popen:
    log = sandbox_dir(state_dir) / "daemon.log"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    )
    with os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "sandbox.daemon", "--state-dir", str(state_dir), "--host-kind", host_kind],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            env=env,
            cwd=str(PROJECT_ROOT),
            start_new_session=True,
            close_fds=True,
        )


def _wait_for_api(state_dir: Path, process: subprocess.Popen) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SandboxError(
                f"the sandbox daemon exited at start ({_last_log_line(state_dir)}); see "
                f"{sandbox_dir(state_dir) / 'daemon.log'}"
            )
        endpoint = _daemon_info(state_dir).get("endpoint")
        if endpoint and _answers(endpoint):
            return endpoint
        time.sleep(0.1)
    _stop_pid(process.pid)
    raise SandboxError(
        f"the sandbox daemon did not answer within {START_TIMEOUT:.0f} s; see "
        f"{sandbox_dir(state_dir) / 'daemon.log'}"
    )


def _last_log_line(state_dir: Path) -> str:
    try:
        lines = (sandbox_dir(state_dir) / "daemon.log").read_text().strip().splitlines()
    except OSError:
        return "no log"
    errors = [line for line in lines if "Error" in line or "ERROR" in line]
    return (errors or lines or ["no log"])[-1].strip()


def _describe(instances: dict[str, dict]) -> str:
    return ", ".join(f"{i} ({entry.get('state')})" for i, entry in sorted(instances.items()))


def down_message(state_dir: Path) -> str | None:
    """One line when the daemon is not running but its saved state still has instances, else None."""
    if running_endpoint(state_dir):
        return None
    saved = apistate.live_saved_instances(sandbox_dir(state_dir))
    if not saved:
        return None
    return (
        f"the sandbox daemon is not running; its saved state has {_describe(saved)}: run `fab provision` "
        "to restart it and bring them back (or `fab teardown` to remove them)"
    )


def status(state_dir: Path) -> dict[str, Any]:
    """The daemon (pid, endpoint, rootfs, host_os, proxy), its hosts (id, address, state, namespace,
    sshd pid), and `down`: what to do when the daemon is not running but its saved instances exist."""
    from sandbox import container, host
    from sandbox.rootfs import os_name

    info = _daemon_info(state_dir)
    endpoint = running_endpoint(state_dir)
    try:
        recorded = json.loads((sandbox_dir(state_dir) / "hosts.json").read_text())
    except (OSError, ValueError):
        recorded = {}
    hosts = []
    for instance_id, entry in sorted(recorded.get("hosts", {}).items()):
        pid = entry.get("pid")
        hosts.append(
            {
                "instance_id": instance_id,
                "address": entry.get("address"),
                "state": entry.get("state"),
                "namespace": entry.get("netns"),
                "sshd_pid": _sshd_pid(host, container, instance_id, entry) if endpoint and pid else None,
                "kind": entry.get("kind", "chroot"),
            }
        )
    return {
        "running": endpoint is not None,
        "pid": info.get("pid") if endpoint else None,
        "endpoint": endpoint,
        "rootfs": info.get("rootfs"),
        "host_kind": info.get("host_kind", "systemd") if endpoint else None,
        "host_os": os_name(Path(info["rootfs"])) if info.get("rootfs") else None,
        "proxy": info.get("proxy") if endpoint else None,
        "hosts": hosts,
        "saved_instances": apistate.saved_instances(sandbox_dir(state_dir)),
        "down": down_message(state_dir),
    }


def _sshd_pid(host, container, instance_id: str, entry: dict) -> int | None:
    if entry.get("kind") == "systemd":
        return container.sshd_pid(instance_id)
    return host.sshd_pid(entry["pid"])


def _busy_instances(state_dir: Path, endpoint: str) -> list[str]:
    """Instances the API still has in a non-terminated state, in every region the daemon has seen."""
    import boto3

    try:
        recorded = json.loads((sandbox_dir(state_dir) / "hosts.json").read_text())
    except (OSError, ValueError):
        recorded = {}
    regions = {v.get("region") for v in recorded.get("instances", {}).values()} | {"ap-northeast-2"}
    busy = []
    for region in sorted(r for r in regions if r):
        client = boto3.client(
            "ec2",
            region_name=region,
            endpoint_url=endpoint,
            aws_access_key_id="sandbox",
            aws_secret_access_key="sandbox",
        )
        pages = client.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-state-name", "Values": list(IDLE_STATES)}]
        )
        for page in pages:
            busy += [i["InstanceId"] for r in page["Reservations"] for i in r["Instances"]]
    return busy


def shutdown_if_idle(state_dir: Path) -> bool:
    """Stop the daemon and remove its files when no instance is pending/running/stopping/stopped.

    Returns True when no daemon of this state dir runs afterwards (also when none ran), False when busy.
    """
    state_dir = Path(state_dir).resolve()
    with _control_lock(state_dir):
        endpoint = running_endpoint(state_dir)
        if endpoint and _busy_instances(state_dir, endpoint):
            return False
        if not endpoint and apistate.live_saved_instances(sandbox_dir(state_dir)):
            return False  # a stopped daemon's instances: the next daemon brings them back
        pid = _daemon_info(state_dir).get("pid")
        if pid and daemon_alive(int(pid)):
            _stop_pid(int(pid))
    disk.remove_all(sandbox_dir(state_dir))
    return True


def _stop_pid(pid: int) -> None:
    """SIGTERM the daemon (it halts its hosts, keeping their files and the API state); if it does not stop in
    time, SIGKILL and clean orphans."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and daemon_alive(pid):
        time.sleep(0.05)
    if daemon_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while daemon_alive(pid):
            time.sleep(0.05)
        cleanup_orphans()
