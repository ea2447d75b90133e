"""The host layer for real: provision, deploy-echo and verify over SSH on a sandbox host (Debian 12).

The tests share one host and run in file order: dry run first (nothing changes), then provision twice,
deploy twice, verify, and the failure cases (server stopped, port 12345 blocked by the security group).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import deploy, waits
from lab.connect import open_connection
from lab.provision import HostOptions
from lab.remote import Host
from lab.result import CHANGED, OK, WOULD_CHANGE, HostReport
from labctl import host_tasks
from labctl.errors import LabError
from tests.lab.conftest import ECHO_PORT, eventually

pytestmark = [pytest.mark.root, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2]
FAB = Path(sys.executable).with_name("fab")  # the fab of this interpreter's environment

SNAPSHOT = (
    "cat /etc/apt/sources.list; ls /etc/apt/sources.list.orig 2>&1; readlink /etc/localtime; "
    "cat /etc/timezone 2>&1; cat ~/.vimrc 2>&1; dpkg-query -W gcc make 2>&1; ls -d ~/server-socket 2>&1"
)


@pytest.fixture(scope="module")
def ssh(sandbox_host):
    conn = open_connection(sandbox_host.target, ssh_timeout=30)
    yield lambda command: conn.run(command, hide=True, warn=True, in_stream=False)
    conn.close()


def statuses(report: HostReport) -> dict[str, str]:
    return {r.step: r.status for r in report.results}


def provision(box, dry_run=False, **kw) -> HostReport:
    return host_tasks.provision_hosts([box.target], HostOptions(**kw), dry_run, out=io.StringIO())


def deploy_echo(box, **kw) -> HostReport:
    return host_tasks.deploy_echo([box.target], out=io.StringIO(), **kw)


def run_verify(box) -> tuple[bool, dict]:
    out = io.StringIO()
    passed = host_tasks.verify([box.target], as_json=True, out=out)
    return passed, json.loads(out.getvalue())


def failures(data: dict) -> dict[str, str]:
    return {r["step"]: r["detail"] for r in data["results"] if r["status"] != "pass"}


def test_fresh_host_is_debian_with_the_ec2_archive(ssh):
    assert "bookworm" in ssh("cat /etc/os-release").stdout
    assert "ec2.archive.ubuntu.com" in ssh("cat /etc/apt/sources.list").stdout


def test_dry_run_reports_changes_and_changes_nothing(sandbox_host, ssh):
    ssh("printf 'syntax on\\n' > ~/.vimrc")
    before = ssh(SNAPSHOT).stdout
    report = provision(sandbox_host, dry_run=True)
    assert statuses(report) == {
        "cloud-init": OK,
        "apt locks": OK,
        "apt mirror": WOULD_CHANGE,
        "timezone": WOULD_CHANGE,
        ".vimrc": WOULD_CHANGE,
        "packages": WOULD_CHANGE,
        "work dir": WOULD_CHANGE,
    }
    assert ssh(SNAPSHOT).stdout == before


def test_provision_changes_the_host(sandbox_host, ssh):
    original_sources = ssh("cat /etc/apt/sources.list").stdout
    report = provision(sandbox_host)
    assert statuses(report) == {
        "cloud-init": OK,
        "apt locks": OK,
        "apt mirror": CHANGED,
        "timezone": CHANGED,
        ".vimrc": CHANGED,
        "packages": CHANGED,
        "work dir": CHANGED,
    }
    assert "http://mirror.kakao.com/" in ssh("cat /etc/apt/sources.list").stdout
    assert ssh("cat /etc/apt/sources.list.orig").stdout == original_sources
    assert ssh("date +%Z").stdout.strip() == "KST"
    assert ssh("cat /etc/timezone").stdout.strip() == "Asia/Seoul"
    assert ssh("cat ~/.vimrc").stdout == "syntax on\nset nu\nset ts=4\nset sw=4\nset ls=2\n"
    assert ssh("gcc --version && make --version").ok
    assert ssh("test -d ~/server-socket").ok


def test_second_provision_changes_nothing(sandbox_host, ssh):
    before = ssh(SNAPSHOT + "; ls -l --time-style=+%s /etc/apt/sources.list.orig ~/.vimrc").stdout
    report = provision(sandbox_host)
    assert set(statuses(report).values()) == {OK}
    assert ssh(SNAPSHOT + "; ls -l --time-style=+%s /etc/apt/sources.list.orig ~/.vimrc").stdout == before


def test_deploy_dry_run_on_a_fresh_host_changes_nothing(sandbox_host, ssh):
    report = deploy_echo(sandbox_host, dry_run=True)
    assert statuses(report) == {"upload": WOULD_CHANGE, "compile": WOULD_CHANGE, "echo service": WOULD_CHANGE}
    assert ssh("ls -A ~/server-socket").stdout == ""


def test_deploy_echo_builds_and_starts_the_c_server(sandbox_host, ssh):
    report = deploy_echo(sandbox_host)
    assert statuses(report) == {"upload": CHANGED, "compile": CHANGED, "echo service": CHANGED}
    assert ssh("cd ~/server-socket && ls echo_server echo_client echo_server.py").ok
    assert ssh("cat ~/server-socket/echo-server.mode").stdout.strip().endswith("/echo_server 12345")


def test_second_deploy_uploads_builds_and_restarts_nothing(sandbox_host, ssh):
    pid_before = ssh("cat ~/server-socket/echo-server.pid").stdout
    report = deploy_echo(sandbox_host)
    assert set(statuses(report).values()) == {OK}
    assert ssh("cat ~/server-socket/echo-server.pid").stdout == pid_before


def test_verify_passes_on_the_provisioned_host(sandbox_host):
    passed, data = run_verify(sandbox_host)
    assert failures(data) == {}
    assert passed
    steps = {r["step"]: r["detail"] for r in data["results"]}
    assert "Debian GNU/Linux 12" in steps["os"] and "not Ubuntu" in steps["os"]
    assert steps["timezone"].startswith("KST")
    assert "mirror.kakao.com" in steps["apt mirror"]
    assert steps["other server"].startswith("python server on 12346")


def test_verify_table_is_readable(sandbox_host):
    out = io.StringIO()
    assert host_tasks.verify([sandbox_host.target], out=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["HOST", "CHECK", "RESULT", "DETAIL"]
    assert all(" PASS " in line for line in lines[1:-1])
    assert lines[-1].startswith("summary: ") and "failed" not in lines[-1]


def test_changed_source_is_uploaded_rebuilt_and_restarted(sandbox_host, ssh, tmp_path):
    edited = tmp_path / "echo"
    shutil.copytree(deploy.ECHO_DIR, edited, ignore=shutil.ignore_patterns("echo_server", "echo_client"))
    source = edited / "echo_server.c"
    source.write_text(source.read_text() + "\nint labctl_edit_marker = 1;\n")  # changes the binary
    report = HostReport()
    conn = open_connection(sandbox_host.target, ssh_timeout=30)
    try:
        deploy.deploy_echo(Host(conn, "lab-1", report), deploy.ServerChoice("c"), edited)
    finally:
        conn.close()
    assert statuses(report) == {"upload": CHANGED, "compile": CHANGED, "echo service": CHANGED}
    assert report.results[0].detail == "echo_server.c"
    assert "program changed" in report.results[2].detail
    restore = deploy_echo(sandbox_host)
    assert statuses(restore)["upload"] == CHANGED


def test_a_client_only_change_rebuilds_without_restarting_the_server(sandbox_host, ssh, tmp_path):
    edited = tmp_path / "echo"
    shutil.copytree(deploy.ECHO_DIR, edited, ignore=shutil.ignore_patterns("echo_server", "echo_client"))
    source = edited / "echo_client.c"
    source.write_text(source.read_text() + "\nint labctl_edit_marker = 1;\n")  # changes the binary
    pid_before = ssh("cat ~/server-socket/echo-server.pid").stdout
    report = HostReport()
    conn = open_connection(sandbox_host.target, ssh_timeout=30)
    try:
        deploy.deploy_echo(Host(conn, "lab-1", report), deploy.ServerChoice("c"), edited)
    finally:
        conn.close()
    assert statuses(report) == {"upload": CHANGED, "compile": CHANGED, "echo service": OK}
    assert ssh("cat ~/server-socket/echo-server.pid").stdout == pid_before
    assert statuses(deploy_echo(sandbox_host))["echo service"] == OK


def test_switching_to_the_python_concurrent_server_restarts_only_the_service(sandbox_host, ssh):
    report = deploy_echo(sandbox_host, server="python", concurrent=True)
    assert statuses(report) == {"upload": OK, "compile": OK, "echo service": CHANGED}
    assert "--concurrent" in ssh("cat ~/server-socket/echo-server.mode").stdout
    passed, data = run_verify(sandbox_host)
    assert failures(data) == {}
    assert {r["step"]: r["detail"] for r in data["results"]}["other server"].startswith("c server on 12346")
    assert set(statuses(deploy_echo(sandbox_host, server="python", concurrent=True)).values()) == {OK}


def test_deploy_dry_run_changes_nothing(sandbox_host, ssh):
    before = ssh("cat ~/server-socket/echo-server.mode ~/server-socket/echo-server.pid").stdout
    report = deploy_echo(sandbox_host, server="c", dry_run=True)
    assert statuses(report) == {"upload": OK, "compile": OK, "echo service": WOULD_CHANGE}
    assert ssh("cat ~/server-socket/echo-server.mode ~/server-socket/echo-server.pid").stdout == before


def test_verify_fails_with_the_reason_when_the_server_is_stopped(sandbox_host, ssh):
    ssh("kill -TERM -$(cat ~/server-socket/echo-server.pid)")
    assert eventually(lambda: not ssh(f"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{ECHO_PORT}'").ok)
    passed, data = run_verify(sandbox_host)
    assert not passed
    failed = failures(data)
    assert failed[f"tcp {ECHO_PORT}"].startswith(f"TCP {ECHO_PORT} refused: no echo server listens")
    assert "nc on host" in failed
    report = deploy_echo(sandbox_host, server="python", concurrent=True)
    assert statuses(report)["echo service"] == CHANGED
    assert "was not running" in report.results[-1].detail


def test_a_hand_started_server_on_12345_is_named_not_fought(sandbox_host, ssh):
    ssh("kill -TERM -$(cat ~/server-socket/echo-server.pid)")
    assert eventually(lambda: not ssh(f"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{ECHO_PORT}'").ok)
    by_hand = ssh("cd ~/server-socket && { setsid ./echo_server > /dev/null 2>&1 < /dev/null & echo $!; }")
    assert eventually(lambda: ssh(f"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{ECHO_PORT}'").ok)
    try:
        with pytest.raises(LabError, match="port 12345 is in use by a program labctl did not start"):
            deploy_echo(sandbox_host, server="python", concurrent=True)
    finally:
        ssh(f"kill {int(by_hand.stdout)}")
    assert eventually(lambda: not ssh(f"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{ECHO_PORT}'").ok)
    assert statuses(deploy_echo(sandbox_host, server="python", concurrent=True))["echo service"] == CHANGED


def test_verify_fails_with_the_reason_when_the_security_group_blocks_12345(sandbox_host):
    sandbox_host.block(ECHO_PORT)
    try:
        passed, data = run_verify(sandbox_host)
    finally:
        sandbox_host.allow(ECHO_PORT)
    assert not passed
    assert failures(data) == {
        f"tcp {ECHO_PORT}": f"TCP {ECHO_PORT} timed out: the security group has no rule for "
        f"{ECHO_PORT} from your address"
    }


def test_byo_host_needs_known_hosts_or_the_trust_flag(sandbox_host, state_dir):
    byo = sandbox_host.as_byo()
    with pytest.raises(LabError, match="--trust-new-host"):
        host_tasks.provision_hosts([byo], out=io.StringIO())
    report = host_tasks.provision_hosts([byo], HostOptions(trust_new_host=True), out=io.StringIO())
    assert set(statuses(report).values()) == {OK}
    assert (state_dir / "known_hosts").read_text().startswith(sandbox_host.target.address + " ssh-ed25519 ")
    again = host_tasks.deploy_echo([byo], server="python", concurrent=True, out=io.StringIO())
    assert set(statuses(again).values()) == {OK}


def fab(*args: str, state_dir) -> subprocess.CompletedProcess:
    env = dict(os.environ, LAB_STATE_DIR=str(state_dir))
    return subprocess.run(
        [str(FAB), *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=240
    )


def test_fab_deploy_echo_and_verify_with_a_byo_host(sandbox_host, state_dir):
    t = sandbox_host.target
    login = ["-H", f"{t.user}@{t.address}", "-i", t.key_file]
    refused = fab(*login, "deploy-echo", state_dir=state_dir)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: deploy-echo failed on ") and "--trust-new-host" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and "Traceback" not in refused.stderr
    unverified = fab(*login, "verify", state_dir=state_dir)
    assert unverified.returncode == 1
    assert "FAILED" in unverified.stdout and "--trust-new-host" in unverified.stdout
    first = fab(
        *login,
        "provision",
        "--trust-new-host",
        "deploy-echo",
        "--server",
        "python",
        "--concurrent",
        "verify",
        state_dir=state_dir,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    step_lines = [line for line in first.stdout.splitlines() if line.startswith(f"[{t.address}] ")]
    assert [line.split()[1] for line in step_lines] == [
        "cloud-init",
        "apt",
        "apt",
        "timezone",
        ".vimrc",
        "packages",
        "work",
        "upload",
        "compile",
        "echo",
    ]
    assert "FAILED" not in first.stdout and "summary: " in first.stdout
    again = fab(*login, "provision", "deploy-echo", "--server", "python", "--concurrent", state_dir=state_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    rerun_lines = [line for line in again.stdout.splitlines() if line.startswith(f"[{t.address}] ")]
    assert len(rerun_lines) == len(step_lines)
    assert all(re.search(r"\s{2}ok(:|$)", line) for line in rerun_lines), rerun_lines
    as_json = fab(*login, "verify", "--json", state_dir=state_dir)
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["ok"] is True


def test_c_concurrent_runs_the_poll_server_or_fails_before_connecting(sandbox_host, ssh):
    if not (deploy.ECHO_DIR / deploy.C_CONCURRENT_SOURCE).exists():
        with pytest.raises(LabError, match="no concurrent mode"):
            deploy_echo(sandbox_host, server="c", concurrent=True)
        return
    report = deploy_echo(sandbox_host, server="c", concurrent=True)
    assert statuses(report) == {"upload": OK, "compile": OK, "echo service": CHANGED}
    assert ssh("cat ~/server-socket/echo-server.mode").stdout.strip().endswith("/echo_server_poll 12345")
    passed, data = run_verify(sandbox_host)
    assert failures(data) == {}
    assert passed


def test_without_cloud_init_there_is_nothing_to_wait_for(sandbox_host, ssh):
    # The chroot host has no cloud-init (the fallback); its real wait, its `done` and its `error` run on
    # booted hosts: tests/lab/test_systemd_path.py and tests/sandbox/test_ec2_like_lab.py.
    assert not ssh("PATH=$PATH:/usr/sbin:/sbin command -v cloud-init").ok
    report = provision(sandbox_host)
    assert (report.results[0].step, report.results[0].detail) == (
        "cloud-init",
        "not installed here, nothing to wait for",
    )


def test_held_apt_lock_is_waited_for_then_named(sandbox_host, ssh):
    assert ssh("sudo -n env DEBIAN_FRONTEND=noninteractive apt-get -q -y install psmisc").ok
    holder = ssh("sudo -n sh -c 'setsid sleep 60 < /var/lib/dpkg/lock-frontend > /dev/null 2>&1 & echo $!'")
    holder_pid = int(holder.stdout)
    report = HostReport()
    conn = open_connection(sandbox_host.target, ssh_timeout=30)
    try:
        with pytest.raises(LabError, match="apt/dpkg locks still held after 1 s"):
            waits.wait_apt_locks(Host(conn, "lab-1", report), seconds=1)
        ssh(f"sudo -n kill {holder_pid}")
        waits.wait_apt_locks(Host(conn, "lab-1", report), seconds=30)
    finally:
        conn.close()
    assert [(r.step, r.status, r.detail) for r in report.results] == [("apt locks", OK, "free")]


def test_sudo_that_wants_a_password_is_one_clear_error(sandbox_host, ssh):
    """Last test of the module: it takes the host's sudo away."""
    assert ssh("sudo -n rm /etc/sudoers.d/90-ubuntu").ok
    with pytest.raises(LabError) as err:
        host_tasks.provision_hosts([sandbox_host.target], dry_run=False, out=io.StringIO())
    assert "sudo asks ubuntu for a password" in str(err.value)
    assert "NOPASSWD" in str(err.value)
