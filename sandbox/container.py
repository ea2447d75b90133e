"""The booting sandbox host (kind `systemd`): systemd as PID 1 in a systemd-nspawn container, booting as an
EC2 Ubuntu instance does (cloud-init, sshd), inside the host's network namespace.

The launcher (`unshare --mount`, so the overlay lives in a private mount namespace and vanishes with it) moves
itself into the host's own cgroup, mounts the overlay (the cached boot rootfs below, the host's upper dir on
top) and execs `systemd-nspawn --boot`; its pid is nspawn's. nspawn's stdout is the container's console
(`--console=read-only`), written to the host's console.log, one file per boot.

Lifecycle: SIGTERM to nspawn halts the container cleanly (systemd shutdown); `poweroff` inside makes nspawn
exit 0, `reboot` exit 133; start boots again from the same upper dir (cloud-init's per-instance state
there keeps host keys and users).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from labcore.net import SANDBOX_GATEWAY
from sandbox import cgroups, cloudimage, disk, host

STOP_TIMEOUT = 20.0
REBOOT_EXIT = 133  # nspawn's exit status when the container asked to reboot
NSPAWN_LOG = "nspawn.log"

LAUNCH_SCRIPT = r"""
set -e
cgroups=$1 rootfs=$2 upper=$3 work=$4 merged=$5 mark=$6
shift 6
# another host's stop may remove the shared `labctl` dir between mkdir -p's two steps: try again
for dir in $cgroups; do
  n=0; until { mkdir -p "$dir" && echo $$ > "$dir/cgroup.procs"; } 2>/dev/null; do
    n=$((n+1)); [ $n -lt 100 ] || { echo "labctl: cannot join cgroup $dir" >&2; exit 1; }; sleep 0.02
  done
done
mount -t overlay "$mark" -o "lowerdir=$rootfs,upperdir=$upper,workdir=$work" "$merged"
exec systemd-nspawn "$@"
"""


def machine_uuid(instance_id: str) -> str:
    """The container's id (systemd makes /etc/machine-id from it on first boot): stable per instance."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "labctl-sandbox:" + instance_id))


def seed(host_dir: Path, rootfs: Path, spec: host.HostSpec) -> None:
    """Write what the host needs before each boot into its upper dir: EC2's firmware identifiers (first
    boot), the apt proxy's port, and, without a metadata service, cloud-init's None-datasource fallback."""
    disk.attach(host_dir)
    upper = disk.upper(host_dir)
    (host_dir / "merged").mkdir(exist_ok=True)
    for name, value in cloudimage.dmi_values(spec.instance_id).items():
        host._seed_file(upper, rootfs, f"{cloudimage.DMI_DIR}/{name}", value + "\n")
    host._seed_file(
        upper,
        rootfs,
        "etc/apt/apt.conf.d/01labctl-proxy",
        f'Acquire::http::Proxy "http://{SANDBOX_GATEWAY}:{spec.proxy_port}";\nAcquire::Languages "none";\n',
    )
    fallback = upper / cloudimage.NO_IMDS_CONFIG
    if spec.imds_port is None:
        host._seed_file(upper, rootfs, cloudimage.NO_IMDS_CONFIG, cloudimage.no_imds_config(spec.public_key))
    else:
        fallback.unlink(missing_ok=True)


def _dmi_binds(host_dir: Path) -> list[str]:
    """Read-only binds over this machine's DMI files where it has them (else the image's dmidecode answers
    cloud-init)."""
    values = disk.upper(host_dir) / cloudimage.DMI_DIR
    return [
        f"--bind-ro={values / name}:/sys/class/dmi/id/{name}"
        for name in cloudimage.dmi_values("")
        if Path("/sys/class/dmi/id", name).exists()
    ]


def nspawn_args(host_dir: Path, spec: host.HostSpec, netns: str) -> list[str]:
    return [
        f"--directory={host_dir / 'merged'}",
        "--boot",
        "--register=no",  # this machine's PID 1 is not systemd: no machined, no system bus
        "--keep-unit",
        f"--network-namespace-path=/run/netns/{netns}",
        "--console=read-only",
        f"--hostname={spec.hostname}",
        f"--machine={spec.instance_id}",
        f"--uuid={machine_uuid(spec.instance_id)}",
        "--resolv-conf=off",  # the image's own resolv.conf (no DNS in the sandbox)
        "--timezone=off",  # the host's own /etc/localtime (UTC until someone sets one, as on EC2)
        "--link-journal=no",
        *_dmi_binds(host_dir),
    ]


def start(host_dir: Path, rootfs: Path, spec: host.HostSpec, netns: str, owner: int) -> subprocess.Popen:
    """Boot the container; returns the nspawn process (leader of its own process group)."""
    cgroups.kill(spec.instance_id)  # a previous boot's leftovers (none after a clean stop)
    cgroups.remove(spec.instance_id)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        host.OWNER_ENV: str(owner),
        host.INSTANCE_ENV: spec.instance_id,
    }
    command = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        LAUNCH_SCRIPT,
        "labctl-boot",
        " ".join(str(d) for d in cgroups.host_dirs(spec.instance_id)),
        str(rootfs),
        str(disk.upper(host_dir)),
        str(disk.work(host_dir)),
        str(host_dir / "merged"),
        f"labctl-{spec.instance_id}",
        *nspawn_args(host_dir, spec, netns),
    ]
    with host.open_console(host_dir) as console, open(host_dir / NSPAWN_LOG, "ab") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=log,
            env=env,
            start_new_session=True,
            close_fds=True,
        )


def stop(process: subprocess.Popen, instance_id: str, timeout: float = STOP_TIMEOUT) -> None:
    """Halt the container cleanly (SIGTERM to nspawn: systemd shuts down); after `timeout` kill it all.
    Returns once nothing of it runs and its cgroups are gone."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    cgroups.kill(instance_id)
    cgroups.remove(instance_id)


def wait_stopped(instance_id: str, timeout: float = STOP_TIMEOUT) -> None:
    """For a container whose nspawn is not our child (orphan cleanup): wait until its cgroups are empty,
    then kill what is left and remove them."""
    deadline = time.monotonic() + timeout
    while cgroups.pids(instance_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    cgroups.kill(instance_id)
    cgroups.remove(instance_id)


def shut_itself_down(process: subprocess.Popen) -> bool:
    """True when the container exited because its systemd powered off (`poweroff`, `shutdown -h`)."""
    return process.returncode == 0


def sshd_pid(instance_id: str) -> int | None:
    """The container's sshd listener (the `sshd` of its cgroups whose parent is not an sshd)."""
    names = {}
    for pid in cgroups.pids(instance_id):
        try:
            head, rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)
            names[pid] = (head.split("(", 1)[1], int(rest.split()[1]))
        except (OSError, IndexError, ValueError):
            continue
    for pid, (name, ppid) in names.items():
        if name == "sshd" and names.get(ppid, ("", 0))[0] != "sshd":
            return pid
    return None
