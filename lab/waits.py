"""Step 2: wait until cloud-init has finished and no apt/dpkg process holds the package locks."""

from __future__ import annotations

from lab import facts
from lab.remote import Host
from lab.result import OK
from labctl.errors import LabError

APT_LOCKS = (
    "/var/lib/dpkg/lock-frontend",
    "/var/lib/dpkg/lock",
    "/var/lib/apt/lists/lock",
    "/var/cache/apt/archives/lock",
)
CLOUD_INIT_TIMEOUT = 600
LOCK_WAIT_SECONDS = 300
# apt itself also waits this long for the dpkg lock (apt >= 1.9.11, Ubuntu 20.04 and later).
APT_LOCK_TIMEOUT_OPTION = f"-o DPkg::Lock::Timeout={LOCK_WAIT_SECONDS}"


def wait_cloud_init(host: Host) -> None:
    """`cloud-init status --wait` where cloud-init exists; a failed cloud-init is reported, not fatal."""
    if not facts.has_command(host, "cloud-init"):
        host.record("cloud-init", OK, "not installed here, nothing to wait for")
        return
    out = host.run("cloud-init status --wait", timeout=CLOUD_INIT_TIMEOUT)
    status = parse_cloud_init_status(out.stdout)
    if status == "error" or (not out.ok and status != "done"):
        raise LabError(
            f"{host.name}: cloud-init finished with status '{status or 'unknown'}'; "
            f"see /var/log/cloud-init-output.log on the instance, or recreate it (fab teardown provision)"
        )
    host.record("cloud-init", OK, f"status {status}")


def parse_cloud_init_status(stdout: str) -> str:
    """The word after `status:` in `cloud-init status` output (`done`, `error`, ...)."""
    for line in stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "status":
            return value.strip()
    return ""


def lock_wait_script(seconds: int = LOCK_WAIT_SECONDS) -> str:
    """A shell loop that waits while any process holds an apt/dpkg lock file (needs fuser)."""
    locks = " ".join(APT_LOCKS)
    return (
        f"i=0; while fuser {locks} >/dev/null 2>&1; do "
        f"i=$((i+1)); [ $i -ge {seconds} ] && exit 3; sleep 1; done; echo waited=$i"
    )


def wait_apt_locks(host: Host, seconds: int = LOCK_WAIT_SECONDS) -> None:
    """Wait for apt/dpkg locks to be free (where `fuser` exists; apt-get also waits on its own)."""
    if not facts.has_command(host, "fuser"):
        host.record("apt locks", OK, "fuser missing; apt-get waits for the locks itself")
        return
    out = host.sudo("PATH=$PATH:/usr/sbin:/sbin; " + lock_wait_script(seconds), timeout=seconds + 30)
    if out.exited == 3:
        raise LabError(
            f"{host.name}: apt/dpkg locks still held after {seconds} s (unattended-upgrades?); "
            f"wait a few minutes and re-run"
        )
    host.record("apt locks", OK, "free")
