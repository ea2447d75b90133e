"""The provision steps on one host, in the course's order (step 1, waiting for SSH, is in lab.connect)."""

from __future__ import annotations

from dataclasses import dataclass

from lab import facts, mirror, packages, timezone, vimrc, waits
from lab.errors import HostError
from lab.remote import Host, q
from lab.result import outcome

WORK_DIR = "~/server-socket"


@dataclass(frozen=True)
class HostOptions:
    """What the user may choose for the host part of `fab provision`; checked where it is made, so a bad
    --mirror fails before anything is created or started (also with --dry-run)."""

    mirror: str = mirror.DEFAULT_MIRROR
    timezone: str = timezone.DEFAULT_TIMEZONE
    packages: tuple[str, ...] = packages.LAB_PACKAGES
    trust_new_host: bool = False
    ssh_timeout: float = 180.0

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> HostOptions:
        if not mirror.is_valid_mirror(self.mirror):
            raise HostError(
                f"--mirror {self.mirror!r} is not a host name (letters, digits, dots, dashes): "
                "give one like mirror.kakao.com"
            )
        return self


def work_dir(host: Host, exists: bool) -> None:
    """Step 7: `mkdir -p ~/server-socket` unless it `exists`."""
    if not exists and not host.dry_run:
        host.run(f'mkdir -p "$HOME"/{WORK_DIR[2:]}', check=True)
    host.record("work dir", outcome(not exists, host.dry_run), WORK_DIR)


def fact_commands(host: Host, options: HostOptions) -> dict[str, str]:
    """Everything provision needs to know, in order: the waits first, then the facts of steps 3-7."""
    return {
        "home": facts.HOME_COMMAND,
        "cloud-init": waits.cloud_init_wait_command(),
        "apt locks": waits.lock_wait_command(host.user),
        **{path: facts.file_section(path) for path in mirror.SOURCE_FILES},
        **timezone.fact_commands(options.timezone),
        "vimrc": facts.file_section(vimrc.VIMRC),
        "packages": facts.dpkg_query_command(list(options.packages)),
        "work dir": f"test -d {q(WORK_DIR)}",
    }


FACTS_TIMEOUT = waits.CLOUD_INIT_TIMEOUT + waits.LOCK_WAIT_SECONDS + 60


def provision(host: Host, options: HostOptions) -> None:
    """Steps 2-7 on one connected host; each reports ok / changed / would change.

    All facts come from ONE remote command (the waits run first inside it); then each step compares and
    changes only what differs, in dry-run mode too.
    """
    found = facts.gather(host, fact_commands(host, options), timeout=FACTS_TIMEOUT)
    host.know_home(found["home"].text)
    waits.wait_cloud_init(host, found["cloud-init"])
    waits.wait_apt_locks(host, waited=found["apt locks"])
    sources = {path: facts.file_text(found[path]) for path in mirror.SOURCE_FILES}
    moved = mirror.apt_mirror(host, options.mirror, sources)
    timezone.timezone(host, options.timezone, timezone.parse_zone_facts(found))
    vimrc.vimrc(host, facts.file_text(found["vimrc"]))
    installed = facts.parse_installed(found["packages"].text)
    packages.packages(host, options.packages, installed, refresh_lists=bool(moved))
    work_dir(host, found["work dir"].ok)
