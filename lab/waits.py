"""Step 2: wait until cloud-init has finished and no apt/dpkg process holds the package locks."""

from __future__ import annotations

from lab.errors import HostError
from lab.facts import Section
from lab.remote import Host, as_root
from lab.result import OK

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
NOT_INSTALLED = 127  # exit status of the wait commands below when the tool they need is missing
SBIN_PATH = "PATH=$PATH:/usr/sbin:/sbin"


CLOUD_INIT_RESULT = "/run/cloud-init/result.json"  # written at the end of cloud-init's final stage
NO_ERRORS = '"errors": []'  # how cloud-init's write_json renders a boot without errors


def cloud_init_wait_command() -> str:
    """`status: done` at once when this boot's cloud-init finished without errors (its result file says
    so: a re-run need not start cloud-init's Python, ~0.4 s), else `cloud-init status --wait` where
    cloud-init exists (it waits, and names an error), else exit 127."""
    return (
        f"if grep -qF '{NO_ERRORS}' {CLOUD_INIT_RESULT} 2>/dev/null; then echo 'status: done'; "
        f"elif {SBIN_PATH} command -v cloud-init >/dev/null 2>&1; then cloud-init status --wait; "
        f"else (exit {NOT_INSTALLED}); fi"
    )


def wait_cloud_init(host: Host, waited: Section | None = None) -> None:
    """Wait for cloud-init where it exists; its error stops the task with the log to read.

    `waited` is the output of `cloud_init_wait_command()` when it already ran in a batch of facts.
    """
    if waited is None:
        out = host.run(cloud_init_wait_command(), timeout=CLOUD_INIT_TIMEOUT)
        waited = Section(out.stdout, out.exited)
    if waited.exited == NOT_INSTALLED:
        host.record("cloud-init", OK, "not installed here, nothing to wait for")
        return
    status = parse_cloud_init_status(waited.text)
    if status == "error" or (not waited.ok and status != "done"):
        raise HostError(
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


def lock_wait_command(user: str, seconds: int = LOCK_WAIT_SECONDS) -> str:
    """The lock wait as root where `fuser` exists (sudo's complaints on stdout), else exit 127."""
    wait = as_root(f"{SBIN_PATH}; " + lock_wait_script(seconds), user)
    return (
        f"if {SBIN_PATH} command -v fuser >/dev/null 2>&1; then {wait} 2>&1; else (exit {NOT_INSTALLED}); fi"
    )


def wait_apt_locks(host: Host, seconds: int = LOCK_WAIT_SECONDS, waited: Section | None = None) -> None:
    """Wait for apt/dpkg locks to be free (where `fuser` exists; apt-get also waits on its own).

    `waited` is the output of `lock_wait_command()` when it already ran in a batch of facts.
    """
    if waited is None:
        out = host.run(lock_wait_command(host.user, seconds), timeout=seconds + 30)
        waited = Section(out.stdout, out.exited)
    if waited.exited == NOT_INSTALLED:
        host.record("apt locks", OK, "fuser missing; apt-get waits for the locks itself")
        return
    host.refuse_sudo_password(waited.text)
    if waited.exited == 3:
        raise HostError(
            f"{host.name}: apt/dpkg locks still held after {seconds} s (unattended-upgrades?); "
            f"wait a few minutes and re-run"
        )
    host.record("apt locks", OK, "free")
