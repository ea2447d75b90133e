"""The systemd branches (timedatectl, the echo-server unit) on a sandbox host that claims systemd.

The sandbox has no systemd, so this module gives its host /run/systemd/system and small stand-ins for
`systemctl` and `timedatectl` that record their calls and do the minimum for real (run the unit's
ExecStart as its User, set the zone link). What is tested is labctl's side: which commands it sends,
the unit it writes, and that a re-run starts nothing.
"""

from __future__ import annotations

import io
import shlex

import pytest

from lab import deploy
from lab.connect import open_connection
from lab.result import CHANGED, OK
from labctl import host_tasks

pytestmark = [pytest.mark.root, pytest.mark.slow]

FAKE_SYSTEMCTL = r"""#!/bin/sh
# test stand-in for systemctl: records its calls, runs the unit's ExecStart as its User
echo "$*" >> /var/log/fake-systemctl.log
cmd=$1; shift
for arg in "$@"; do case $arg in --*) ;; *) unit=$arg ;; esac; done
pidfile=/run/fake-$unit.pid
unitfile=/etc/systemd/system/$unit
case $cmd in
  daemon-reload|enable) exit 0 ;;
  is-active) [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null ;;
  stop)
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile"); kill "$pid" 2>/dev/null
      while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
      rm -f "$pidfile"
    fi ;;
  start)
    user=$(sed -n 's/^User=//p' "$unitfile")
    exec_start=$(sed -n 's/^ExecStart=//p' "$unitfile")
    setsid setpriv --reuid="$user" --regid="$user" --init-groups sh -c "exec $exec_start" \
      > /dev/null 2>&1 < /dev/null &
    echo $! > "$pidfile" ;;
  *) exit 1 ;;
esac
"""

FAKE_TIMEDATECTL = r"""#!/bin/sh
echo "$*" >> /var/log/fake-timedatectl.log
[ "$1" = set-timezone ] && ln -sfn "/usr/share/zoneinfo/$2" /etc/localtime && echo "$2" > /etc/timezone
"""


@pytest.fixture(scope="module")
def ssh(sandbox_host):
    conn = open_connection(sandbox_host.target, ssh_timeout=30)
    run = lambda command: conn.run(command, hide=True, warn=True, in_stream=False)  # noqa: E731
    for path, body in (
        ("/usr/local/bin/systemctl", FAKE_SYSTEMCTL),
        ("/usr/local/bin/timedatectl", FAKE_TIMEDATECTL),
    ):
        write = f"printf %s {shlex.quote(body)} | sudo -n tee {path} > /dev/null && sudo -n chmod 755 {path}"
        assert run(write).ok
    assert run("sudo -n mkdir -p /run/systemd/system").ok
    logs = "/var/log/fake-systemctl.log /var/log/fake-timedatectl.log"
    assert run(f"sudo -n touch {logs} && sudo -n chmod 666 {logs}").ok  # is-active runs unprivileged
    yield run
    conn.close()


def statuses(report) -> dict[str, str]:
    return {r.step: r.status for r in report.results}


def calls(ssh, tool: str) -> list[str]:
    return ssh(f"cat /var/log/fake-{tool}.log 2>/dev/null").stdout.splitlines()


def test_timezone_uses_timedatectl_where_systemd_runs(sandbox_host, ssh):
    report = host_tasks.provision_hosts([sandbox_host.target], out=io.StringIO())
    assert statuses(report)["timezone"] == CHANGED
    assert calls(ssh, "timedatectl") == ["set-timezone Asia/Seoul"]
    assert ssh("date +%Z").stdout.strip() == "KST"


def test_deploy_writes_the_unit_and_starts_it(sandbox_host, ssh):
    report = host_tasks.deploy_echo([sandbox_host.target], out=io.StringIO())
    assert statuses(report) == {"upload": CHANGED, "compile": CHANGED, "echo service": CHANGED}
    assert report.results[-1].detail.startswith("systemd unit: ")
    command = "/home/ubuntu/server-socket/echo_server 12345"
    assert ssh(f"cat {deploy.UNIT_PATH}").stdout == deploy.render_unit("ubuntu", "/home/ubuntu", command)
    assert calls(ssh, "systemctl") == [
        f"is-active --quiet {deploy.UNIT_NAME}",
        "daemon-reload",
        f"enable --quiet {deploy.UNIT_NAME}",
        f"stop {deploy.UNIT_NAME}",
        f"start {deploy.UNIT_NAME}",
    ]
    assert ssh("ps -o user= -C echo_server").stdout.split() == ["ubuntu"]
    assert not ssh(f"test -e ~/server-socket/{deploy.PID_FILE}").ok  # no supervised process as well


def test_second_deploy_only_asks_whether_the_unit_is_active(sandbox_host, ssh):
    before = len(calls(ssh, "systemctl"))
    report = host_tasks.deploy_echo([sandbox_host.target], out=io.StringIO())
    assert set(statuses(report).values()) == {OK}
    assert calls(ssh, "systemctl")[before:] == [f"is-active --quiet {deploy.UNIT_NAME}"]


def test_switching_server_rewrites_the_unit_and_restarts(sandbox_host, ssh):
    report = host_tasks.deploy_echo([sandbox_host.target], server="python", out=io.StringIO())
    assert statuses(report) == {"upload": OK, "compile": OK, "echo service": CHANGED}
    assert (
        "ExecStart=/usr/bin/python3 /home/ubuntu/server-socket/echo_server.py 12345\n"
        in ssh(f"cat {deploy.UNIT_PATH}").stdout
    )
    assert host_tasks.verify([sandbox_host.target], out=io.StringIO())
