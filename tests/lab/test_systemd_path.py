"""The systemd branches (cloud-init wait, timedatectl, the echo unit) for real on a booted sandbox host.

The host boots as an EC2 instance does (systemd PID 1 under systemd-nspawn, cloud-init from the Ec2
datasource), so nothing here is a stand-in: the lab's detection sees systemd, `timedatectl` sets the zone,
the unit is written, enabled and started by systemd, and a re-run restarts nothing (same main PID). The
no-systemd fallbacks are tested on the chroot host (test_sandbox_host.py).
"""

from __future__ import annotations

import io

import pytest

from lab import deploy
from lab.connect import open_connection
from lab.result import CHANGED, OK
from labctl import host_tasks

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def ssh(booted_host):
    conn = open_connection(booted_host.target, ssh_timeout=30)
    run = lambda command: conn.run(command, hide=True, warn=True, in_stream=False)  # noqa: E731
    yield run
    conn.close()


def statuses(report) -> dict[str, str]:
    return {r.step: r.status for r in report.results}


def main_pid(ssh) -> str:
    return ssh(f"systemctl show -p MainPID --value {deploy.UNIT_NAME}").stdout.strip()


def test_the_host_really_runs_systemd(ssh):
    assert ssh("cat /proc/1/comm").stdout.strip() == "systemd"
    assert ssh("test -d /run/systemd/system").ok  # what the lab's detection asks (sd_booted)
    assert not ssh("test -e /usr/local/bin/systemctl -o -e /usr/local/bin/timedatectl").ok


def test_timezone_uses_timedatectl_where_systemd_runs(booted_host, ssh):
    report = host_tasks.provision_hosts([booted_host.target], out=io.StringIO())
    found = statuses(report)
    assert found["timezone"] == CHANGED
    assert report.results[0].step == "cloud-init" and report.results[0].detail == "status done"
    assert ssh("timedatectl show -p Timezone --value").stdout.strip() == "Asia/Seoul"
    assert ssh("date +%Z").stdout.strip() == "KST"
    again = host_tasks.provision_hosts([booted_host.target], out=io.StringIO())
    assert statuses(again)["timezone"] == OK


def test_deploy_writes_the_unit_enables_and_starts_it(booted_host, ssh):
    report = host_tasks.deploy_echo([booted_host.target], out=io.StringIO())
    assert statuses(report) == {"upload": CHANGED, "compile": CHANGED, "echo service": CHANGED}
    assert report.results[-1].detail.startswith("systemd unit: ")
    command = "/home/ubuntu/server-socket/echo_server 12345"
    assert ssh(f"cat {deploy.UNIT_PATH}").stdout == deploy.render_unit("ubuntu", "/home/ubuntu", command)
    assert ssh(f"systemctl is-active {deploy.UNIT_NAME}").stdout.strip() == "active"
    assert ssh(f"systemctl is-enabled {deploy.UNIT_NAME}").stdout.strip() == "enabled"
    pid = main_pid(ssh)
    assert ssh(f"ps -o user= -p {pid}").stdout.split() == ["ubuntu"]
    assert f"/system.slice/{deploy.UNIT_NAME}" in ssh(f"cat /proc/{pid}/cgroup").stdout
    assert not ssh(f"test -e ~/server-socket/{deploy.PID_FILE}").ok  # no supervised process as well


def test_second_deploy_restarts_nothing(booted_host, ssh):
    before = main_pid(ssh)
    report = host_tasks.deploy_echo([booted_host.target], out=io.StringIO())
    assert set(statuses(report).values()) == {OK}
    assert main_pid(ssh) == before


def test_switching_server_rewrites_the_unit_and_restarts(booted_host, ssh):
    before = main_pid(ssh)
    report = host_tasks.deploy_echo([booted_host.target], server="python", out=io.StringIO())
    assert statuses(report) == {"upload": OK, "compile": OK, "echo service": CHANGED}
    assert (
        "ExecStart=/usr/bin/python3 /home/ubuntu/server-socket/echo_server.py 12345\n"
        in ssh(f"cat {deploy.UNIT_PATH}").stdout
    )
    assert main_pid(ssh) not in ("0", before)
    assert host_tasks.verify([booted_host.target], out=io.StringIO())
