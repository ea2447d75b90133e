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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandbox import cloudimage
from sandbox.errors import SandboxError
from sandbox.mirror import debian_mirror_url
from sandbox.registry import live_daemons

CHROOT_KIND = "chroot"
BOOT_KIND = "systemd"

SUITE = "bookworm"
STAMP_FILE = ".labctl-rootfs-stamp"
# Hosts name the EC2 regional archive, as an EC2 Ubuntu image does; the gateway's apt proxy serves it.
GUEST_SOURCES_LIST = "deb http://ap-northeast-2.ec2.archive.ubuntu.com/debian bookworm main\n"
POLICY_RC_D = "#!/bin/sh\n# labctl: nothing starts while the tree is built\nexit 101\n"

# ---- the chroot host's tree (no systemd; kept for tests that need a host without it) -------------------
DEFAULT_ROOTFS = Path("/var/cache/labctl/rootfs-bookworm")
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
INIT_SOURCE = Path(__file__).with_name("guest_init.py")  # copied into the tree as the hosts' PID 1
INIT_PATH = "usr/local/sbin/labctl-init"
SSHD_CONFIG = """# labctl sandbox host: keys only, no PAM (there is no login session machinery here)
HostKey /etc/ssh/ssh_host_ed25519_key
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
"""
RECIPE_VERSION = "1"

# ---- the booting host's tree: systemd as PID 1 under systemd-nspawn, cloud-init, sshd -------------------
DEFAULT_BOOT_ROOTFS = Path("/var/cache/labctl/rootfs-bookworm-systemd")
BOOT_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "cloud-init",
    "python3-cffi-backend",  # provides the virtual cffi API packages debootstrap's resolver cannot pick
    "ifupdown",  # cloud-init needs netplan.io or ifupdown; netplan's renderer would call udevadm
    "openssh-server",
    "sudo",
    "iproute2",
    "python3",
    "netcat-openbsd",
    "iputils-ping",
    "procps",
    "ca-certificates",
    "tzdata",
    "less",
    "vim-tiny",
)
BOOT_RECIPE_VERSION = "1"


@dataclass(frozen=True)
class Recipe:
    """One kind of cached tree: where it lives, what goes in, and how it is finished after debootstrap."""

    kind: str
    default_path: Path
    env: str
    packages: tuple[str, ...]
    stamp_parts: tuple[str, ...]
    stamp_files: tuple[Path, ...]
    customise: Callable[[Path], None]


def rootfs_path(kind: str = BOOT_KIND) -> Path:
    """Where the cached tree of a host kind lives (its environment variable overrides)."""
    recipe = RECIPES[kind]
    return Path(os.environ.get(recipe.env) or recipe.default_path)


def recipe_stamp(kind: str = BOOT_KIND) -> str:
    """A digest of everything that shapes the tree: a change means rebuild."""
    recipe = RECIPES[kind]
    digest = hashlib.sha256()
    for part in recipe.stamp_parts:
        digest.update(part.encode() + b"\0")
    for path in recipe.stamp_files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def is_current(path: Path, kind: str = BOOT_KIND) -> bool:
    try:
        return (path / STAMP_FILE).read_text().strip() == recipe_stamp(kind)
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


def ensure_rootfs(say=print, kind: str = BOOT_KIND) -> Path:
    """Return the cached tree of a host kind, building it first (a minute or two, once) when missing or
    outdated."""
    path = rootfs_path(kind)
    if is_current(path, kind):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_current(path, kind):
            _build(path, RECIPES[kind], say)
    return path


def _build(path: Path, recipe: Recipe, say) -> None:
    if shutil.which("debootstrap") is None:
        raise SandboxError("debootstrap is missing: install it with `apt-get install debootstrap`")
    if path.exists():
        _refuse_while_in_use(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove_tree(tmp)
    say(f"sandbox: building the hosts' root filesystem in {path} (Debian {SUITE}, once; a few minutes)")
    try:
        _write(tmp, "usr/sbin/policy-rc.d", POLICY_RC_D, 0o755)  # no package starts a service here
        _debootstrap(tmp, recipe.packages, say)
        recipe.customise(tmp)
        (tmp / STAMP_FILE).write_text(recipe_stamp(recipe.kind) + "\n")
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


def _debootstrap(target: Path, packages: tuple[str, ...], say) -> None:
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(packages)}",
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


def _customise_chroot(target: Path) -> None:
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


def _customise_boot(target: Path) -> None:
    """An EC2-like image: no user yet (cloud-init makes `ubuntu`), no host keys, no machine id, services
    allowed to start once it boots (policy-rc.d removed)."""
    _write(target, "etc/apt/sources.list", GUEST_SOURCES_LIST)
    for extra in (target / "etc/apt/sources.list.d").glob("*"):
        extra.unlink()
    for key in (target / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    for relpath, (content, mode) in cloudimage.image_files().items():
        _write(target, relpath, content, mode)
    cloudimage.amend_hosts_template(target)
    (target / "etc/machine-id").write_text("")  # each host gets its own on first boot
    (target / "etc/hostname").unlink(missing_ok=True)  # debootstrap copied this machine's; nspawn sets it
    (target / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for unit in cloudimage.MASKED_UNITS:
        link = target / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    for deb in (target / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    (target / "usr/sbin/policy-rc.d").unlink(missing_ok=True)


RECIPES = {
    CHROOT_KIND: Recipe(
        kind=CHROOT_KIND,
        default_path=DEFAULT_ROOTFS,
        env="LAB_SANDBOX_ROOTFS",
        packages=PACKAGES,
        stamp_parts=(RECIPE_VERSION, SUITE, ",".join(PACKAGES), GUEST_SOURCES_LIST, SSHD_CONFIG),
        stamp_files=(INIT_SOURCE,),  # the same digest as before the recipes: the old tree stays current
        customise=_customise_chroot,
    ),
    BOOT_KIND: Recipe(
        kind=BOOT_KIND,
        default_path=DEFAULT_BOOT_ROOTFS,
        env="LAB_SANDBOX_BOOT_ROOTFS",
        packages=BOOT_PACKAGES,
        stamp_parts=(
            BOOT_RECIPE_VERSION,
            SUITE,
            ",".join(BOOT_PACKAGES),
            GUEST_SOURCES_LIST,
            POLICY_RC_D,
            *cloudimage.image_digest_parts(),
        ),
        stamp_files=(),
        customise=_customise_boot,
    ),
}
