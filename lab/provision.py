"""The provision steps on one host, in the course's order (step 1, waiting for SSH, is in lab.connect)."""

from __future__ import annotations

from dataclasses import dataclass

from lab import mirror, packages, timezone, vimrc, waits
from lab.remote import Host
from lab.result import outcome
from labctl.errors import LabError

WORK_DIR = "~/server-socket"


@dataclass(frozen=True)
class ProvisionOptions:
    """What the user may choose for the host part of `fab provision`."""

    mirror: str = mirror.DEFAULT_MIRROR
    timezone: str = timezone.DEFAULT_TIMEZONE
    packages: tuple[str, ...] = packages.LAB_PACKAGES
    trust_new_host: bool = False
    ssh_timeout: float = 180.0

    def check(self) -> ProvisionOptions:
        if not mirror.is_valid_mirror(self.mirror):
            raise LabError(f"--mirror {self.mirror!r} is not a host name; give one like mirror.kakao.com")
        return self


def work_dir(host: Host) -> None:
    """Step 7: `mkdir -p ~/server-socket`."""
    exists = host.run(f'test -d "$HOME"/{WORK_DIR[2:]}').ok
    if not exists and not host.dry_run:
        host.run(f'mkdir -p "$HOME"/{WORK_DIR[2:]}', check=True)
    host.record("work dir", outcome(not exists, host.dry_run), WORK_DIR)


def provision(host: Host, options: ProvisionOptions) -> None:
    """Steps 2-7 on one connected host; each reports ok / changed / would change."""
    waits.wait_cloud_init(host)
    waits.wait_apt_locks(host)
    moved = mirror.apt_mirror(host, options.mirror)
    timezone.timezone(host, options.timezone)
    vimrc.vimrc(host)
    packages.packages(host, options.packages, refresh_lists=bool(moved))
    work_dir(host)
