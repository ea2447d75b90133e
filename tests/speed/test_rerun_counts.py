"""An idempotent re-run costs one SSH connection and ONE remote command per task (counted, never timed).

Counted twice: by labctl's own counters (the report's `ssh` numbers) and independently, by wrapping
paramiko's transport start and exec calls for the duration of the task.
"""

from __future__ import annotations

import io
import json

import pytest

from lab.provision import HostOptions
from lab.result import OK, HostReport
from labctl import host_tasks
from tests.support.ssh_counts import counting_ssh

pytestmark = [pytest.mark.root, pytest.mark.slow]


def provision(box, dry_run=False):
    return host_tasks.provision_hosts([box.target], HostOptions(), dry_run, out=io.StringIO())


def deploy(box, dry_run=False):
    return host_tasks.deploy_echo([box.target], dry_run=dry_run, out=io.StringIO())


FIRST_RUN: dict[str, dict[str, int]] = {}


@pytest.fixture(scope="module")
def configured(sandbox_host):
    """The sandbox host after one full provision and deploy-echo (their counts kept in FIRST_RUN)."""
    for name, task in (("provision", provision), ("deploy-echo", deploy)):
        first = task(sandbox_host)
        assert first.ok and first.changed
        FIRST_RUN[name] = first.ssh[sandbox_host.target.name]
    return sandbox_host


ONE_COMMAND = {"connections": 1, "commands": 1, "uploads": 0}


@pytest.mark.parametrize("task", [provision, deploy], ids=["provision", "deploy-echo"])
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_rerun_is_one_connection_and_one_command(configured, monkeypatch, task, dry_run):
    with counting_ssh(monkeypatch) as seen:
        report = task(configured, dry_run=dry_run)
    assert {r.status for r in report.results} == {OK}
    assert report.ssh == {configured.target.name: ONE_COMMAND}
    assert dict(seen) == {"connections": 1, "commands": 1}


def test_the_first_run_counted_each_change(configured):
    """On the fresh host every step changed something: one connection, many commands, uploads counted."""
    assert FIRST_RUN["provision"]["connections"] == 1
    assert FIRST_RUN["provision"]["commands"] >= 6  # facts, then mirror, timezone, .vimrc, apt, work dir
    assert FIRST_RUN["deploy-echo"]["uploads"] >= 1  # the sources' tar


def test_the_json_report_carries_the_counts(configured):
    out = io.StringIO()
    host_tasks.provision_hosts([configured.target], as_json=True, out=out)
    data = json.loads(out.getvalue())
    assert data["ssh"] == {configured.target.name: ONE_COMMAND}


def test_one_drifted_setting_costs_only_its_own_change(configured, monkeypatch):
    """A student's edit to ~/.vimrc: one fact command, then one upload and one move for the file."""
    report = host_tasks.run_on_hosts(
        [configured.target], lambda h: h.run("sed -i '/set ts=4/d' ~/.vimrc", check=True), HostReport()
    )
    assert report.ok
    with counting_ssh(monkeypatch) as seen:
        report = provision(configured)
    changed = [r.step for r in report.changed]
    assert changed == [".vimrc"]
    assert report.ssh == {configured.target.name: {"connections": 1, "commands": 2, "uploads": 1}}
    assert seen["connections"] == 1 and seen["commands"] == 2
