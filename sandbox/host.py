"""Sandbox hosts: what both kinds share (spec, console, process helpers) and the chroot host.

The chroot host (kind `chroot`, for tests that need a host WITHOUT systemd): an overlay over the cached
rootfs, private mount/PID/UTS/IPC namespaces inside the host's network namespace, and a tiny init running
`sshd -D` on port 22. The booting host (kind `systemd`, the default) is in sandbox/container.py.

Files of a host live in its directory (`hosts/<instance id>/`): `disk` (a link to its disk in memory,
holding `upper/` and `work/`, the overlay's writable layer, kept across stop/start: sandbox/disk.py),
`merged/` (mount point, only used inside the host's mount namespace), `console.log` (what the host printed on
its console during its latest boot) and `boot-started` (when that boot began, epoch seconds). All mounts live
in the host's private mount namespace and vanish with it, so nothing of a host is mounted on this machine
(its disk is a directory on the one tmpfs of all disks).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from labcore.net import SANDBOX_GATEWAY
from sandbox import disk, selfshutdown
from sandbox.cloudimage import MIRROR_NAMES
from sandbox.errors import SandboxError
from sandbox.network import pid_alive
from sandbox.rootfs import INIT_PATH

OWNER_ENV = "LABCTL_SANDBOX_OWNER"
INSTANCE_ENV = "LABCTL_SANDBOX_INSTANCE"
UBUNTU_UID = 1000
SEEDED_MARK = ".labctl-seeded"
KEYS_PRINTED_MARK = ".labctl-keys-printed"
CONSOLE_FILE = "console.log"
BOOT_STARTED_FILE = "boot-started"

BOOT_SCRIPT = r"""
set -e
rootfs=$1 upper=$2 work=$3 merged=$4 name=$5 mark=$6
mount --make-rprivate /
mount -t overlay "$mark" -o "lowerdir=$rootfs,upperdir=$upper,workdir=$work" "$merged"
mount -t proc proc "$merged/proc"
mount -t sysfs -o ro sysfs "$merged/sys"
mount -t tmpfs -o mode=755,size=16m,nosuid "$mark-dev" "$merged/dev"
for dev in null zero full random urandom tty; do
  touch "$merged/dev/$dev"; mount --bind "/dev/$dev" "$merged/dev/$dev"
done
mkdir -p "$merged/dev/pts" "$merged/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$merged/dev/pts"
ln -s pts/ptmx "$merged/dev/ptmx"
ln -s /proc/self/fd "$merged/dev/fd"
ln -s /proc/self/fd/0 "$merged/dev/stdin"; ln -s /proc/self/fd/1 "$merged/dev/stdout"
ln -s /proc/self/fd/2 "$merged/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev "$mark-shm" "$merged/dev/shm"
mount -t tmpfs -o mode=755,nosuid,nodev "$mark-run" "$merged/run"
mount -t tmpfs -o mode=1777,nosuid,nodev "$mark-tmp" "$merged/tmp"
mkdir -p "$merged/run/lock"
hostname "$name"
exec chroot "$merged" /__INIT__
""".replace("__INIT__", INIT_PATH)


@dataclass(frozen=True)
class HostSpec:
    """What a host is made from."""

    instance_id: str
    address: str
    public_key: str
    proxy_port: int
    imds_port: int | None = None  # None: no instance metadata service (cloud-init falls back to None)

    @property
    def hostname(self) -> str:
        return "ip-" + self.address.replace(".", "-")


def host_key_pub(host_dir: Path) -> str:
    """The host's public ed25519 key line (`ssh-ed25519 AAAA... root@NAME`), '' before the first boot."""
    try:
        return (disk.upper(host_dir) / "etc/ssh/ssh_host_ed25519_key.pub").read_text().strip()
    except OSError:
        return ""


def console_output(host_dir: Path) -> str:
    """The host-key block cloud-init prints on the console, for the client to pin."""
    key = host_key_pub(host_dir)
    if not key:
        return ""
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", "-"], input=key, capture_output=True, text=True
    ).stdout.strip()
    return (
        "-----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
        f"{fingerprint}\n"
        "-----END SSH HOST KEY FINGERPRINTS-----\n"
        "-----BEGIN SSH HOST KEY KEYS-----\n"
        f"{key}\n"
        "-----END SSH HOST KEY KEYS-----\n"
    )


def console_snapshot(host_dir: Path) -> tuple[str, float | None]:
    """What the host's console printed during its latest boot (line ends as `\n`: a terminal's `\r` removed),
    and when that boot started (epoch seconds); ("", None) for a host that never booted."""
    try:
        started = float((host_dir / BOOT_STARTED_FILE).read_text())
    except (OSError, ValueError):
        return "", None
    try:
        return (host_dir / CONSOLE_FILE).read_bytes().decode(errors="replace").replace("\r", ""), started
    except OSError:
        return "", started


def open_console(host_dir: Path):
    """Start a new boot's console file (the previous boot's text is dropped) and note the boot's start."""
    host_dir.mkdir(parents=True, exist_ok=True)
    console = open(host_dir / CONSOLE_FILE, "wb")  # noqa: SIM115 (the caller closes it)
    tmp = host_dir / (BOOT_STARTED_FILE + ".tmp")
    tmp.write_text(f"{time.time():.3f}\n")
    os.replace(tmp, host_dir / BOOT_STARTED_FILE)
    return console


def _mkdirs_like_lower(upper: Path, lower: Path, rel_dir: str) -> None:
    """Create `rel_dir` in the upper layer, each component's owner and mode copied from the lower layer."""
    current_upper, current_lower = upper, lower
    for part in Path(rel_dir).parts:
        current_upper, current_lower = current_upper / part, current_lower / part
        if current_upper.exists():
            continue
        current_upper.mkdir()
        if current_lower.exists():
            st = current_lower.stat()
            os.chown(current_upper, st.st_uid, st.st_gid)
            os.chmod(current_upper, st.st_mode & 0o7777)


def _seed_file(
    upper: Path, lower: Path, relpath: str, content: str, mode: int = 0o644, owner: int = 0
) -> None:
    _mkdirs_like_lower(upper, lower, str(Path(relpath).parent))
    path = upper / relpath
    path.write_text(content)
    os.chown(path, owner, owner)
    os.chmod(path, mode)


def _etc_hosts(hostname: str) -> str:
    return f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n{SANDBOX_GATEWAY}\t{' '.join(MIRROR_NAMES)}\n"


def _generate_host_key(upper: Path, lower: Path, hostname: str) -> None:
    _mkdirs_like_lower(upper, lower, "etc/ssh")
    key = upper / "etc/ssh/ssh_host_ed25519_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{hostname}", "-f", str(key)],
        check=True,
        capture_output=True,
    )
    os.chmod(key, 0o600)


def seed_host(host_dir: Path, rootfs: Path, spec: HostSpec) -> None:
    """Prepare the writable layer: first boot gets identity, key and names; every boot gets the proxy port
    and the poweroff/halt/shutdown commands (a stale shutdown request is dropped)."""
    disk.attach(host_dir)
    upper = disk.upper(host_dir)
    (host_dir / "merged").mkdir(exist_ok=True)
    if not (host_dir / SEEDED_MARK).exists():
        _seed_file(upper, rootfs, "etc/hostname", spec.hostname + "\n")
        _seed_file(upper, rootfs, "etc/hosts", _etc_hosts(spec.hostname))
        _seed_file(upper, rootfs, "etc/resolv.conf", "# no DNS in the sandbox: names come from /etc/hosts\n")
        _generate_host_key(upper, rootfs, spec.hostname)
        _mkdirs_like_lower(upper, rootfs, "home/ubuntu")
        ssh_dir = upper / "home/ubuntu/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(ssh_dir, UBUNTU_UID, UBUNTU_UID)
        _seed_file(
            upper,
            rootfs,
            "home/ubuntu/.ssh/authorized_keys",
            spec.public_key.strip() + "\n",
            0o600,
            UBUNTU_UID,
        )
        (host_dir / SEEDED_MARK).write_text(spec.instance_id + "\n")
    _seed_file(
        upper,
        rootfs,
        "etc/apt/apt.conf.d/01labctl-proxy",
        f'Acquire::http::Proxy "http://{SANDBOX_GATEWAY}:{spec.proxy_port}";\nAcquire::Languages "none";\n',
    )  # no Translation-en: a third of apt-get update's CPU here
    for relpath, script in selfshutdown.COMMANDS.items():
        _seed_file(upper, rootfs, relpath, script, 0o755)
    selfshutdown.request_path(host_dir).unlink(missing_ok=True)


def start_host(host_dir: Path, rootfs: Path, spec: HostSpec, netns: str, owner: int) -> subprocess.Popen:
    """Boot the host inside `netns`; returns the process (leader of its own process group)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", OWNER_ENV: str(owner), INSTANCE_ENV: spec.instance_id}
    command = [
        "ip",
        "netns",
        "exec",
        netns,
        "unshare",
        "--mount",
        "--pid",
        "--uts",
        "--ipc",
        "--fork",
        "--kill-child",
        "sh",
        "-c",
        BOOT_SCRIPT,
        "labctl-boot",
        str(rootfs),
        str(disk.upper(host_dir)),
        str(disk.work(host_dir)),
        str(host_dir / "merged"),
        spec.hostname,
        f"labctl-{spec.instance_id}",
    ]
    with open_console(host_dir) as console:
        if not (host_dir / KEYS_PRINTED_MARK).exists():  # first boot: the keys, as cloud-init prints them
            console.write(console_output(host_dir).encode())
            console.flush()
            (host_dir / KEYS_PRINTED_MARK).touch()
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=console,
            env=env,
            start_new_session=True,
            close_fds=True,
        )


def stop_process_group(pgid: int, timeout: float = 5.0) -> None:
    """SIGTERM the group (unshare ignores it, the host's init does not), then SIGKILL; wait until gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_alive(pgid):
                return
            time.sleep(0.02)
    raise SandboxError(f"host process group {pgid} survived SIGKILL; check `ps -g {pgid}`")


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process of the group lives."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def stop_host(process: subprocess.Popen) -> None:
    """Stop a host started by start_host and reap it."""
    stop_process_group(process.pid)
    process.wait(timeout=5)


def remove_host_dir(host_dir: Path, pgid: int | None) -> None:
    """Delete a host's files; only when its processes are confirmed dead (never under a live overlay)."""
    if pgid is not None and (pid_alive(pgid) or group_alive(pgid)):
        raise SandboxError(f"refusing to remove {host_dir}: its host (process group {pgid}) still runs")
    disk.remove(host_dir)
    shutil.rmtree(host_dir, ignore_errors=True)


def sshd_pid(pgid: int) -> int | None:
    """The host's sshd listener (the `sshd` of the group whose parent is not an sshd)."""
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    head, rest = stat.read().rsplit(")", 1)
                fields = rest.split()
                procs[int(entry)] = (head.split("(", 1)[1], int(fields[1]), int(fields[2]))
            except (OSError, IndexError):
                continue
    for pid, (name, ppid, group) in procs.items():
        if group == pgid and name == "sshd" and procs.get(ppid, ("", 0, 0))[0] != "sshd":
            return pid
    return None
