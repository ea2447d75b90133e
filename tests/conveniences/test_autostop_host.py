"""The host half of --auto-stop on a real sandbox host (root).

The chroot sandbox host has no systemd but a `poweroff` (see sandbox/selfshutdown.py), so it takes the timer
branch; with poweroff and halt moved away it must say `not possible` and schedule nothing. There a `poweroff`
that only logs stands in (the timer branch, fired for real with a 2 s deadline). The systemd branch runs for
real on a booted host (systemd PID 1): `shutdown -h +MIN` writes systemd's own schedule, `shutdown -c`
removes it. The real stop is in test_autostop_sandbox.py and tests/sandbox/test_ec2_like_lab.py.
"""

from __future__ import annotations

import time

import pytest

from lab import autostop
from lab.connect import open_connection
from lab.remote import Host
from lab.result import CHANGED, OK, WOULD_CHANGE, HostReport

from ..lab.conftest import eventually

pytestmark = [pytest.mark.root]

FAKE_POWEROFF = '#!/bin/sh\necho "poweroff $*" >> /var/log/fake-poweroff.log\n'
SCHEDULE_FILE = "/run/systemd/shutdown/scheduled"


@pytest.fixture
def host(sandbox_host):
    conn = open_connection(sandbox_host.target, ssh_timeout=30)
    box = Host(conn, "lab-1", HostReport())
    try:
        yield box
    finally:
        marker = autostop.read_marker(box)
        if marker and marker[1] == autostop.TIMER and marker[2].isdigit():
            box.sudo(f"kill {marker[2]}")
        box.sudo(
            f"rm -rf /usr/local/sbin/poweroff {autostop.MARKER} /var/log/fake-poweroff.log",
            check=True,
        )
        conn.close()


@pytest.fixture
def booted(booted_host):
    """The lab's Host on a booted host (systemd PID 1); a pending shutdown is cancelled afterwards."""
    conn = open_connection(booted_host.target, ssh_timeout=30)
    box = Host(conn, "lab-1", HostReport())
    try:
        yield box
    finally:
        box.sudo(f"shutdown -c 2>/dev/null; rm -f {autostop.MARKER}")
        conn.close()


def schedule_of(host: Host) -> dict[str, str]:
    """systemd's record of the scheduled shutdown (USEC, MODE, WALL_MESSAGE, ...); {} when none."""
    text = host.sudo(f"cat {SCHEDULE_FILE}").stdout if host.sudo(f"test -e {SCHEDULE_FILE}").ok else ""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def in_an_hour() -> int:
    return int(time.time()) + 3600


def test_bare_sandbox_host_schedules_its_own_poweroff_timer(host):
    result = autostop.auto_stop(host, in_an_hour(), "in an hour")
    assert result.status == CHANGED and "sleep + poweroff timer" in result.detail
    assert autostop.read_marker(host)[1] == autostop.TIMER


def test_host_without_poweroff_or_halt_cannot_stop_itself_and_nothing_is_scheduled(host):
    host.sudo(
        "mv /usr/sbin/poweroff /usr/sbin/poweroff.away && mv /usr/sbin/halt /usr/sbin/halt.away", check=True
    )
    try:
        result = autostop.auto_stop(host, in_an_hour(), "in an hour")
    finally:
        host.sudo(
            "mv /usr/sbin/poweroff.away /usr/sbin/poweroff; mv /usr/sbin/halt.away /usr/sbin/halt", check=True
        )
    assert result.status == autostop.NOT_POSSIBLE
    assert "no systemd and no poweroff/halt" in result.detail
    assert host.read_file(autostop.MARKER) is None


def test_timer_branch_schedules_a_detached_sleep_and_a_rerun_keeps_it(host):
    host.write_file("/usr/local/sbin/poweroff", FAKE_POWEROFF, sudo=True, mode="0755")
    deadline = in_an_hour()
    first = autostop.auto_stop(host, deadline, "in an hour")
    assert first.status == CHANGED and "sleep + poweroff timer" in first.detail
    when, method, pid = autostop.read_marker(host)
    assert (when, method) == (deadline, autostop.TIMER)
    cmdline = host.sudo(f"tr '\\0' ' ' < /proc/{pid}/cmdline", check=True).stdout
    assert "sleep 3" in cmdline and "poweroff" in cmdline  # sleep 3599 or 3600, then poweroff

    again = autostop.auto_stop(host, deadline, "in an hour")
    assert again.status == OK and "already scheduled" in again.detail
    assert autostop.read_marker(host)[2] == pid

    moved = autostop.auto_stop(host, deadline + 600, "later")
    assert moved.status == CHANGED
    new_pid = autostop.read_marker(host)[2]
    assert new_pid != pid and eventually(lambda: not host.sudo(f"kill -0 {pid}").ok, timeout=5)


def test_timer_fires_poweroff_at_the_deadline(host):
    host.write_file("/usr/local/sbin/poweroff", FAKE_POWEROFF, sudo=True, mode="0755")
    result = autostop.auto_stop(host, int(time.time()) + 2, "in 2 s")
    assert result.status == CHANGED
    fired = eventually(lambda: host.read_file("/var/log/fake-poweroff.log"), timeout=20)
    assert fired == "poweroff \n"


def test_systemd_branch_uses_shutdown_h_with_whole_minutes(booted):
    assert booted.run("cat /proc/1/comm").stdout.strip() == "systemd"
    deadline = in_an_hour()
    result = autostop.auto_stop(booted, deadline, "in an hour")
    assert result.status == CHANGED and "shutdown -h" in result.detail
    scheduled = schedule_of(booted)
    assert scheduled["MODE"] == "poweroff" and scheduled["WALL_MESSAGE"] == "labctl auto-stop"
    at = int(scheduled["USEC"]) / 1e6
    assert deadline <= at <= deadline + 60  # +60 whole minutes from when it ran, never earlier
    assert autostop.read_marker(booted) == (deadline, autostop.SYSTEMD, "-")
    assert autostop.auto_stop(booted, deadline, "in an hour").status == OK
    assert schedule_of(booted)["USEC"] == scheduled["USEC"]  # not rescheduled


def test_dry_run_schedules_nothing(host):
    host.write_file("/usr/local/sbin/poweroff", FAKE_POWEROFF, sudo=True, mode="0755")
    host.dry_run = True
    result = autostop.auto_stop(host, in_an_hour(), "in an hour")
    assert result.status == WOULD_CHANGE and result.detail.startswith("would schedule")
    assert host.read_file(autostop.MARKER) is None


def test_minutes_round_up():
    assert autostop.minutes_until(1000 + 3600, 1000) == 60
    assert autostop.minutes_until(1000 + 61, 1000) == 2
    assert autostop.minutes_until(1000, 1000) == 1


def test_cancel_kills_the_timer_and_a_second_cancel_changes_nothing(host):
    host.write_file("/usr/local/sbin/poweroff", FAKE_POWEROFF, sudo=True, mode="0755")
    autostop.auto_stop(host, in_an_hour(), "in an hour")
    pid = autostop.read_marker(host)[2]
    assert autostop.cancel_auto_stop(host).status == CHANGED
    assert eventually(lambda: not host.sudo(f"kill -0 {pid}").ok, timeout=5)
    assert host.read_file(autostop.MARKER) is None
    assert autostop.cancel_auto_stop(host).status == OK


def test_cancel_on_systemd_runs_shutdown_c(booted):
    autostop.auto_stop(booted, in_an_hour(), "in an hour")
    assert schedule_of(booted)
    assert autostop.cancel_auto_stop(booted).status == CHANGED
    assert schedule_of(booted) == {} and booted.read_file(autostop.MARKER) is None
    assert autostop.cancel_auto_stop(booted).status == OK
