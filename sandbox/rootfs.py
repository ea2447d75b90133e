"""The hosts' shared read-only root filesystem: a debootstrapped Debian bookworm tree, built once and cached.

Built under a lock into a temporary directory, then renamed into place; a stamp of the package list and the
customisation makes a changed recipe rebuild it. Hosts never write to it (each gets an overlay upper dir).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.mirror import debian_mirror_url
from sandbox.registry import live_daemons

DEFAULT_ROOTFS = Path("/var/cache/labctl/rootfs-bookworm")
SUITE = "bookworm"
PACKAGES = (
    "openssh-server",
    "sudo",
    "iproute2",
    "python3-minimal",
    "python3",
    "netcat-openbsd",
    "iputils-ping",
    "procps",
    "ca-certificates",
    "tzdata",
    "less",
    "vim-tiny",
)
STAMP_FILE = ".labctl-rootfs-stamp"
INIT_SOURCE = Path(__file__).with_name("guest_init.py")  # copied into the tree as the hosts' PID 1
INIT_PATH = "usr/local/sbin/labctl-init"
# Hosts name the EC2 regional archive, as an EC2 Ubuntu image does; the gateway's apt proxy serves it.
GUEST_SOURCES_LIST = "deb http://ap-northeast-2.ec2.archive.ubuntu.com/debian bookworm main\n"
SSHD_CONFIG = """# labctl sandbox host: keys only, no PAM (there is no login session machinery here)
HostKey /etc/ssh/ssh_host_ed25519_key
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
"""
RECIPE_VERSION = "1"


def rootfs_path() -> Path:
    """Where the cached tree lives ($LAB_SANDBOX_ROOTFS overrides)."""
    return Path(os.environ.get("LAB_SANDBOX_ROOTFS") or DEFAULT_ROOTFS)


def recipe_stamp() -> str:
    """A digest of everything that shapes the tree: a change means rebuild."""
    digest = hashlib.sha256()
    for part in (RECIPE_VERSION, SUITE, ",".join(PACKAGES), GUEST_SOURCES_LIST, SSHD_CONFIG):
        digest.update(part.encode() + b"\0")
    digest.update(INIT_SOURCE.read_bytes())
    return digest.hexdigest()[:16]


def is_current(path: Path) -> bool:
    try:
        return (path / STAMP_FILE).read_text().strip() == recipe_stamp()
    except OSError:
        return False


def os_name(path: Path) -> str:
    """PRETTY_NAME of the tree's /etc/os-release: what the hosts really run (Debian, not Ubuntu)."""
    try:
        for line in (path / "etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


def ensure_rootfs(say=print) -> Path:
    """Return the cached tree, building it first (about a minute, once) when missing or outdated."""
    path = rootfs_path()
    if is_current(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_current(path):
            _build(path, say)
    return path


def _build(path: Path, say) -> None:
    if shutil.which("debootstrap") is None:
        raise SandboxError("debootstrap is missing: install it with `apt-get install debootstrap`")
    if path.exists():
        _refuse_while_in_use(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove_tree(tmp)
    say(f"sandbox: building the hosts' root filesystem in {path} (Debian {SUITE}, once; about a minute)")
    try:
        _debootstrap(tmp, say)
        _customise(tmp)
        (tmp / STAMP_FILE).write_text(recipe_stamp() + "\n")
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        _remove_tree(old)
    except BaseException:
        _remove_tree(tmp)
        raise
    say(f"sandbox: root filesystem ready in {path}")


def _refuse_while_in_use(path: Path) -> None:
    """An outdated tree may only be replaced when no daemon's hosts sit on it (never under a live overlay)."""
    if live_daemons():
        raise SandboxError(
            f"the root filesystem {path} is outdated but sandbox daemons still use it: run "
            "`fab teardown` for every sandbox state dir, then try again"
        )


def _debootstrap(target: Path, say) -> None:
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(target),
        debian_mirror_url(SUITE),
    ]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []
    stage = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-20:]
        if line.startswith("I: ") and line.split()[1] != stage:  # one line per stage, not per package
            stage = line.split()[1]
            say(f"sandbox: debootstrap: {line[3:].strip()}")
    if proc.wait() != 0:
        sys.stderr.write("\n".join(tail) + "\n")
        raise SandboxError(
            f"debootstrap failed (exit {proc.returncode}); see the lines above, check apt access"
        )


def _chroot(target: Path, *command: str) -> None:
    subprocess.run(["chroot", str(target), *command], check=True, stdout=subprocess.DEVNULL)


def _write(target: Path, relpath: str, content: str, mode: int = 0o644) -> None:
    path = target / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    os.chmod(path, mode)


def _customise(target: Path) -> None:
    """User ubuntu with passwordless sudo, key-only sshd, EC2-like apt sources, our init; no host keys."""
    _chroot(target, "useradd", "-m", "-s", "/bin/bash", "-G", "sudo", "ubuntu")
    _chroot(target, "usermod", "-p", "*", "ubuntu")  # `*`, not `!`: with UsePAM no, `!` locks key logins too
    _write(target, "etc/sudoers.d/90-ubuntu", "ubuntu ALL=(ALL) NOPASSWD:ALL\n", 0o440)
    _write(target, "etc/ssh/sshd_config.d/labctl.conf", SSHD_CONFIG)
    for key in (target / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    _write(target, "etc/apt/sources.list", GUEST_SOURCES_LIST)
    for extra in (target / "etc/apt/sources.list.d").glob("*"):
        extra.unlink()
    _write(target, "usr/sbin/policy-rc.d", "#!/bin/sh\n# no init system in a sandbox host\nexit 101\n", 0o755)
    _write(target, INIT_PATH, INIT_SOURCE.read_text(), 0o755)
    for deb in (target / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


def _remove_tree(path: Path) -> None:
    """Remove a (partial) tree, first unmounting anything debootstrap left mounted inside it."""
    if not path.exists():
        return
    prefix = str(path) + "/"
    with open("/proc/mounts") as mounts:
        inside = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for mount_point in sorted(inside, reverse=True):
        subprocess.run(["umount", "-l", mount_point], check=False)
    shutil.rmtree(path, ignore_errors=True)
