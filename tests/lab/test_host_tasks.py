"""host_tasks glue without a network: host selection, option checks and the one-line failures."""

from __future__ import annotations

import io

import pytest
from fabric import Connection
from invoke import Context

from lab.provision import HostOptions
from lab.result import HostReport
from lab.target import HostTarget
from labctl import host_tasks
from labctl.errors import LabError


def test_byo_target_from_fabric_dash_h():
    conn = Connection("ubuntu@198.51.100.77:2222", connect_kwargs={"key_filename": ["/keys/lab.pem"]})
    target = host_tasks.byo_target(conn)
    assert target == HostTarget(
        name="198.51.100.77",
        address="198.51.100.77",
        user="ubuntu",
        key_file="/keys/lab.pem",
        port=2222,
        target="byo",
    )


def test_task_hosts_with_dash_h_is_that_host_only():
    conn = Connection("student@127.0.0.1")
    hosts, config = host_tasks.task_hosts(conn)
    seen = [(h.address, h.user, h.target, h.host_keys) for h in hosts]
    assert seen == [("127.0.0.1", "student", "byo", ())]
    assert config is conn.config


def test_task_hosts_without_dash_h_and_without_a_lab_says_what_to_do(tmp_path, monkeypatch):
    pytest.importorskip("labctl.targets")
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "state"))
    with pytest.raises(LabError, match="fab provision"):
        host_tasks.task_hosts(Context())


@pytest.mark.parametrize("task", [host_tasks.provision_hosts, host_tasks.deploy_echo, host_tasks.verify])
def test_no_hosts_is_one_clear_line(task):
    with pytest.raises(LabError, match="no hosts to act on; run fab provision first"):
        task([], out=io.StringIO())


def test_bad_mirror_is_refused_before_connecting():
    host = HostTarget("h", "198.51.100.250")
    with pytest.raises(LabError, match="--mirror 'http://x/' is not a host name"):
        host_tasks.provision_hosts([host], HostOptions(mirror="http://x/"), out=io.StringIO())


def test_bad_server_is_refused_before_connecting():
    with pytest.raises(LabError, match="--server 'rust' is unknown"):
        host_tasks.deploy_echo([HostTarget("h", "198.51.100.250")], server="rust", out=io.StringIO())


def test_failure_summary_names_the_first_host_and_counts_the_rest():
    report = HostReport()
    report.fail_host("a", "SSH on 198.51.100.10:22 not ready after 1 s: connection refused")
    report.fail_host("b", "other")
    with pytest.raises(LabError) as err:
        host_tasks.fail_if_errors(report, "provision")
    assert str(err.value) == (
        "provision failed on a (and 1 more host): "
        "SSH on 198.51.100.10:22 not ready after 1 s: connection refused"
    )


def test_unreachable_host_fails_with_the_ssh_cause(free_port):
    host = HostTarget("h", "127.0.0.1", port=free_port, target="byo")
    out = io.StringIO()
    with pytest.raises(LabError, match="connection refused"):
        host_tasks.provision_hosts([host], HostOptions(ssh_timeout=1), out=out)
    assert "[h] error" in out.getvalue()
