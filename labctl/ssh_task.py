"""`fab ssh`: an interactive shell (or one command) on a lab host, with the lab's key and pinned host key."""

from __future__ import annotations

import sys

from fabric import Config

from infra import keyfile_perms
from lab.connect import KNOWN_HOSTS_FILE, open_connection
from lab.target import HostTarget
from labctl.errors import LabError
from labctl.state import state_dir


def choose_host(hosts: list[HostTarget], instance: str | None = None) -> HostTarget:
    """The one host to log in to: `--instance` (id or name) when given, else the only one."""
    if instance:
        for host in hosts:
            if instance in (host.instance_id, host.name, host.address):
                return host
        raise LabError(f"no running lab instance {instance!r}: choose one of {_ids(hosts)}")
    if len(hosts) != 1:
        raise LabError(
            f"the lab has {len(hosts)} running instances: pick one with --instance ({_ids(hosts)})"
        )
    return hosts[0]


def _ids(hosts: list[HostTarget]) -> str:
    return ", ".join(host.instance_id or host.name for host in hosts) or "none"


def ssh(
    hosts: list[HostTarget],
    command: str | None = None,
    instance: str | None = None,
    *,
    config: Config | None = None,
    trust_new_host: bool = False,
) -> int:
    """Log in to one host; returns the exit status (of `command`, or of the interactive shell)."""
    host = choose_host(hosts, instance)
    if host.key_file:
        keyfile_perms.check_key_file(host.key_file)  # as OpenSSH would: a key others can read is refused
    try:
        conn = open_connection(
            host,
            ssh_timeout=60,
            trust_new_host=trust_new_host,
            known_hosts_file=state_dir() / KNOWN_HOSTS_FILE,
            config=config,
        )
    except LabError as exc:  # issue 14: name a changed public IP after an SSH timeout
        from labctl.targets import ssh_timeout_hint

        hint = ssh_timeout_hint(host, str(exc))
        if hint:
            raise LabError(str(exc) + hint) from None
        raise
    try:
        if command is None:
            return conn.shell().exited
        return conn.run(command, warn=True, pty=sys.stdin.isatty()).exited
    finally:
        conn.close()
