"""Glue between the Fabric tasks and lab/: open one connection per host, run the steps, print the report.

The fabfile (or labctl.targets) turns its target into `HostTarget`s and calls these three functions.
Hosts run in parallel, each over its own single Connection; an expected failure on one host is reported
as one line and makes the task fail (LabError) after the other hosts have finished.
"""

from __future__ import annotations

import contextlib
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TextIO

import paramiko
from fabric import Config, Connection
from invoke import Context

from lab import connect_early, deploy
from lab.connect import KNOWN_HOSTS_FILE, open_connection
from lab.provision import HostOptions, provision
from lab.remote import Host
from lab.result import HostReport
from lab.target import HostTarget
from labctl.errors import LabError
from labctl.state import state_dir

HostJob = Callable[[Host], object]


def run_on_hosts(
    hosts: list[HostTarget],
    job: HostJob,
    report: HostReport,
    *,
    dry_run: bool = False,
    options: HostOptions | None = None,
    config: Config | None = None,
) -> HostReport:
    """Run `job` on every host in parallel (one Connection each), collecting results in `report`."""

    def one(target: HostTarget) -> None:
        run_on_one_host(target, job, report, dry_run=dry_run, options=options, config=config)

    with ThreadPoolExecutor(max_workers=max(1, min(len(hosts), 8))) as pool:
        list(pool.map(one, hosts))
    connect_early.close_unused()
    return report


def run_on_one_host(
    target: HostTarget,
    job: HostJob,
    report: HostReport,
    *,
    dry_run: bool = False,
    options: HostOptions | None = None,
    config: Config | None = None,
    guard: Callable[[Connection], contextlib.AbstractContextManager] | None = None,
) -> None:
    """`job` on one host over one Connection, in this thread; expected failures land in `report` (one line).

    `guard(conn)` wraps the job (class mode: a Ctrl-C closes the connection); its LabError is a failure too.
    """
    options = options or HostOptions()
    conn = connect_early.take(target, config)  # opened while the cloud check ran, if it matches
    try:
        if conn is None:
            conn = open_connection(
                target,
                ssh_timeout=options.ssh_timeout,
                trust_new_host=options.trust_new_host,
                known_hosts_file=state_dir() / KNOWN_HOSTS_FILE,
                config=config,
            )
    except LabError as exc:  # a changed host key keeps its pinned keys: see `infra.pinned_keys`
        from labctl.targets import ssh_timeout_hint  # issue 14: a changed public IP after an SSH timeout

        report.fail_host(target.name, str(exc) + ssh_timeout_hint(target, str(exc)))
        return
    try:
        with guard(conn) if guard else contextlib.nullcontext():
            job(Host(conn, target.name, report, dry_run=dry_run))
    except LabError as exc:
        report.fail_host(target.name, str(exc))
    except (paramiko.SSHException, OSError, EOFError) as exc:
        report.fail_host(target.name, connection_lost(target, exc))
    finally:
        conn.close()


def connection_lost(target: HostTarget, exc: BaseException) -> str:
    """One line for an SSH session that broke in the middle of a task."""
    reason = str(exc) or type(exc).__name__
    return (
        f"the SSH connection to {target.address} broke during the task ({reason}); "
        f"check that the instance is running, then re-run (finished steps are skipped)"
    )


def require_hosts(hosts: list[HostTarget], task: str) -> None:
    if not hosts:
        raise LabError(f"{task}: no hosts to act on; run fab provision first (or give -H user@host)")


def fail_if_errors(report: HostReport, task: str) -> None:
    if report.errors:
        first_host, message = next(iter(report.errors.items()))
        others = len(report.errors) - 1
        more = f" (and {others} more host{'s' if others > 1 else ''})" if others else ""
        raise LabError(f"{task} failed on {first_host}{more}: {message}")


def dry_run_note(dry_run: bool) -> str:
    return " (dry run: nothing is changed)" if dry_run else ""


def run_task(
    task: str,
    title: str,
    hosts: list[HostTarget],
    job: HostJob,
    *,
    dry_run: bool,
    as_json: bool,
    out: TextIO | None,
    options: HostOptions | None,
    config: Config | None,
) -> HostReport:
    """A changing task on every host: title line, live step lines (or JSON), summary; LabError on failure."""
    out = out or sys.stdout
    report = HostReport(live=None if as_json else out)
    if not as_json:
        print(f"{title}: {names(hosts)}{dry_run_note(dry_run)}", file=out, flush=True)
    run_on_hosts(hosts, job, report, dry_run=dry_run, options=options, config=config)
    finish(report, as_json, out)
    fail_if_errors(report, task)
    return report


def provision_hosts(
    hosts: list[HostTarget],
    options: HostOptions | None = None,
    dry_run: bool = False,
    *,
    as_json: bool = False,
    out: TextIO | None = None,
    config: Config | None = None,
    after: HostJob | None = None,
) -> HostReport:
    """Provision steps 1-7 on every host; prints one line per step (or JSON); LabError if a host failed.

    `after`: one more step on each host over the same connection once the setup succeeded (auto-stop).
    """
    require_hosts(hosts, "provision")
    options = (options or HostOptions()).check()

    def job(host: Host) -> None:
        provision(host, options)
        if after is not None:
            after(host)

    return run_task(
        "provision",
        "provision",
        hosts,
        job,
        dry_run=dry_run,
        as_json=as_json,
        out=out,
        options=options,
        config=config,
    )


def deploy_echo(
    hosts: list[HostTarget],
    server: str = "c",
    concurrent: bool = False,
    dry_run: bool = False,
    *,
    as_json: bool = False,
    out: TextIO | None = None,
    options: HostOptions | None = None,
    config: Config | None = None,
) -> HostReport:
    """Upload/build/run the echo server on every host (only what changed); LabError if a host failed."""
    choice = server_choice(server, concurrent)
    require_hosts(hosts, "deploy-echo")
    title = f"deploy-echo ({server}{' --concurrent' if concurrent else ''})"
    return run_task(
        "deploy-echo",
        title,
        hosts,
        lambda h: deploy.deploy_echo(h, choice),
        dry_run=dry_run,
        as_json=as_json,
        out=out,
        options=options,
        config=config,
    )


def server_choice(server: str, concurrent: bool) -> deploy.ServerChoice:
    """--server and --concurrent as a ServerChoice; a bad one is a HostError before any connection."""
    choice = deploy.ServerChoice(server, concurrent)
    choice.program(deploy.local_sources())
    return choice


def verify(
    hosts: list[HostTarget],
    as_json: bool = False,
    *,
    out: TextIO | None = None,
    options: HostOptions | None = None,
    config: Config | None = None,
) -> bool:
    """All checks from this machine and on each host; prints a table (or JSON); True only if all passed.

    Read-only for the lab record: state.json is never written. Finding the hosts may pin an instance's host
    keys in pinned_host_keys.json the first time they are read from its console (the trust store, which a
    rebooted instance's console could not refill), as every connecting task does.
    """
    from lab.verify import verify_from_here, verify_on_host  # only the verify task needs the checks

    require_hosts(hosts, "verify")
    out = out or sys.stdout
    report = HostReport()
    for target in hosts:
        verify_from_here(report, target.name, target.address)
    run_on_hosts(hosts, verify_on_host, report, options=options, config=config)
    if as_json:
        print(report.json(), file=out)
    else:
        print(report.table(), file=out)
    return report.ok


def finish(report: HostReport, as_json: bool, out: TextIO) -> None:
    print(report.json() if as_json else report.summary(), file=out, flush=True)


def byo_target(conn: Connection) -> HostTarget:
    """A bring-your-own host from Fabric's `-H user@host[:port]` (key from `-i`/ssh config via its config)."""
    key_files = conn.connect_kwargs.get("key_filename") or []
    if isinstance(key_files, str):
        key_files = [key_files]
    return HostTarget(
        name=conn.host,
        address=conn.host,
        user=conn.user,
        key_file=key_files[0] if len(key_files) == 1 else None,
        port=conn.port,
        target="byo",
    )


def task_hosts(c: Context, *, connect_early_too: bool = True) -> tuple[list[HostTarget], Config]:
    """The hosts a Fabric task acts on: the `-H` host (bring your own) or the recorded lab's instances.

    For the lab's instances, SSH to the ones the last run used starts while EC2 is asked
    (`lab.connect_early`; `connect_early_too=False` for a task that makes its own connection).
    """
    if isinstance(c, Connection):
        return [byo_target(c)], c.config
    from labctl import targets  # the cloud layer, only needed without -H

    if connect_early_too:
        connect_early.start(targets.remembered_host_targets(), config=c.config)
    return targets.host_targets(out=sys.stderr), c.config  # stderr: a --json task's stdout stays JSON


def names(hosts: list[HostTarget]) -> str:
    return ", ".join(f"{h.name} ({h.target}, {h.user}@{h.address})" for h in hosts)
