"""SSH opened early (while the cloud check runs) is used only for exactly its host, else closed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from infra import pinned_keys
from lab import connect_early
from lab.result import HostReport
from lab.target import HostTarget
from labctl import host_tasks
from tests.support.local_sshd import keygen
from tests.support.ssh_counts import counting_ssh

pytestmark = pytest.mark.root


@pytest.fixture
def host(sshd) -> HostTarget:
    return HostTarget(
        name="i-local",
        address="127.0.0.1",
        user="root",
        key_file=sshd.client_key,
        port=sshd.port,
        host_keys=((sshd.host_key_type, sshd.host_key_b64),),
        target="sandbox",
        instance_id="i-local",
    )


def run_true(hosts: list[HostTarget]) -> HostReport:
    return host_tasks.run_on_hosts(hosts, lambda h: h.run("true", check=True), HostReport())


def test_the_task_uses_the_early_connection_so_it_connects_once(host, monkeypatch):
    with counting_ssh(monkeypatch) as seen:
        connect_early.start([host])
        report = run_true([host])
    assert report.ok, report.errors
    assert report.ssh[host.name]["connections"] == 1
    assert seen["connections"] == 1 and seen["commands"] == 1


def test_an_early_connection_for_another_target_is_closed_unused(host, monkeypatch):
    guess = replace(host, name="i-old", instance_id="i-old")  # what the last run used: another instance
    with counting_ssh(monkeypatch) as seen:
        connect_early.start([guess])
        early = connect_early._ATTEMPTS[guess].result()
        assert early is not None and early.is_connected
        report = run_true([host])
    assert report.ok
    assert seen == {"connections": 2, "commands": 1}  # the task made its own; nothing ran on the guess
    assert not early.is_connected and connect_early._ATTEMPTS == {}


def test_an_unused_early_connection_is_closed(host):
    connect_early.start([host])
    attempt = connect_early._ATTEMPTS[host]
    conn = attempt.result()
    assert conn is not None and conn.transport.is_active()
    connect_early.close_unused()
    assert not conn.is_connected and connect_early._ATTEMPTS == {}


def test_a_connection_opened_with_another_config_is_not_taken(host):
    from fabric import Config

    connect_early.start([host], config=Config())
    assert connect_early.take(host, None) is None


def test_a_failed_early_attempt_is_silent_and_the_task_reports_as_usual(host, tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "state"))
    other = keygen(tmp_path / "impostor")
    wrong = replace(host, host_keys=(other,))  # pinned keys that the server does not have
    instance = {"InstanceId": host.instance_id, "LaunchTime": "t", "PublicIpAddress": host.address}
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    pinned_keys.remember_keys(state_dir, instance, wrong.host_keys)
    connect_early.start([wrong])
    assert connect_early.take(wrong, None) is None
    report = run_true([wrong])
    assert "does not match" in report.errors[host.name]
    # Issue 14: the pinned keys are kept (a re-read console shows no keys after a reboot); the user forgets
    # them with `fab forget-host-keys` after checking.
    assert pinned_keys.remembered_keys(state_dir, instance) == wrong.host_keys


def test_no_early_connection_without_pinned_keys(host):
    byo = replace(host, host_keys=(), target="byo")
    connect_early.start([byo])
    assert connect_early._ATTEMPTS == {}
