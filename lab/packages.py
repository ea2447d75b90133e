"""Step 6: install the compiler tool chain with apt, only what is missing, never upgrading."""

from __future__ import annotations

import shlex

from lab.errors import HostError
from lab.remote import Host, last_line
from lab.result import outcome
from lab.waits import APT_LOCK_TIMEOUT_OPTION

# gcc and make are the lab's. On Ubuntu 20.04 `apt install gcc make` also brings exactly two recommended
# packages, libc6-dev (the C headers) and manpages-dev (`man 2 socket`): they are named here and installed
# with --no-install-recommends, so newer releases do not pull libc-devtools' graphics stack (libgd,
# fontconfig, X11 libraries: ~30 more packages, a third of the install time). netcat-openbsd (`nc`, the
# course's fake client/server) ships with Ubuntu images, so it is only ever installed on minimal hosts.
LAB_PACKAGES = ("gcc", "make", "libc6-dev", "manpages-dev", "netcat-openbsd")
APT_ENV = "DEBIAN_FRONTEND=noninteractive"
APT_RETRIES_OPTION = "-o Acquire::Retries=3"  # a mirror's passing hiccup (a dropped download) is retried
APT_TIMEOUT = 900


def install_command(missing: list[str]) -> str:
    """The root command: refresh the package lists, then install exactly the missing packages."""
    names = " ".join(shlex.quote(n) for n in missing)
    apt = f"env {APT_ENV} apt-get -q -y {APT_LOCK_TIMEOUT_OPTION} {APT_RETRIES_OPTION}"
    return f"{apt} update && {apt} install --no-upgrade --no-install-recommends {names}"


def update_command() -> str:
    return f"env {APT_ENV} apt-get -q -y {APT_LOCK_TIMEOUT_OPTION} {APT_RETRIES_OPTION} update"


def packages(host: Host, names: tuple[str, ...], installed: set[str], *, refresh_lists: bool = False) -> None:
    """Install `names` not in `installed` (the dpkg fact); `refresh_lists` runs apt-get update anyway."""
    missing = [n for n in names if n not in installed]
    status = outcome(bool(missing), host.dry_run)
    if missing and not host.dry_run:
        run_apt(host, install_command(missing))
    elif refresh_lists and not host.dry_run:
        run_apt(host, update_command())
    detail = f"install {' '.join(missing)}" if missing else "installed: " + " ".join(names)
    host.record("packages", status, detail)


def run_apt(host: Host, command: str) -> None:
    out = host.sudo(command, timeout=APT_TIMEOUT)
    if not out.ok:
        raise HostError(
            f"{host.name}: apt-get failed: {apt_error(out)}; check the mirror in /etc/apt/sources.list "
            f"(--mirror) and the host's network, then re-run"
        )


def apt_error(out) -> str:
    """apt's first `E:` line (e.g. `Failed to fetch URL  502 ...`), which names the cause; the last
    one is often only `Unable to fetch some archives`."""
    text = f"{out.stderr}\n{out.stdout}"
    errors = [line.strip() for line in text.splitlines() if line.startswith("E: ")]
    return errors[0] if errors else last_line(out)
