"""Instance-initiated shutdown on a real sandbox instance (root): `poweroff` from --auto-stop's timer stops
the instance in the EC2 API (its files kept, StartInstances boots it again), `shutdown -h now` with
behaviour `terminate` terminates it, and what a host cannot do is refused with one line.

The tests share one instance and run in file order (stop/start first, terminate last).
"""

from __future__ import annotations

import time

import pytest

from lab import autostop
from lab.connect import open_connection
from lab.remote import Host
from lab.result import CHANGED, HostReport
from sandbox import testhost

from ..lab.conftest import eventually

pytestmark = [pytest.mark.root, pytest.mark.slow]


def instance_of(box) -> dict:
    reservations = box.ec2.describe_instances(InstanceIds=[box.instance_id])["Reservations"]
    return reservations[0]["Instances"][0]


def state_of(box) -> str:
    return instance_of(box)["State"]["Name"]


def connect(box) -> tuple:
    conn = open_connection(box.target, ssh_timeout=30)
    return conn, Host(conn, "lab-1", HostReport())


def test_plain_user_cannot_power_off_and_shutdown_refuses_a_schedule(sandbox_host):
    conn, host = connect(sandbox_host)
    try:
        refused = host.run("/usr/sbin/poweroff")
        assert not refused.ok and "must be root" in refused.stderr
        scheduled = host.sudo("shutdown -h +5")
        assert not scheduled.ok and "only supports 'shutdown -h now'" in scheduled.stderr
        assert host.run("true").ok
    finally:
        conn.close()
    assert state_of(sandbox_host) == "running"


def test_auto_stop_timer_stops_the_instance_and_start_boots_it_with_its_files(sandbox_host):
    conn, host = connect(sandbox_host)
    try:
        host.write_file("/home/ubuntu/kept.txt", "still here\n")
        result = autostop.auto_stop(host, int(time.time()) + 2, "in 2 s")
        assert result.status == CHANGED and "sleep + poweroff timer" in result.detail
    finally:
        conn.close()
    assert eventually(lambda: state_of(sandbox_host) == "stopped", timeout=60)
    assert instance_of(sandbox_host)["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"

    sandbox_host.ec2.start_instances(InstanceIds=[sandbox_host.instance_id])
    testhost.wait_for_port(sandbox_host.target.address, timeout=60)
    conn, host = connect(sandbox_host)  # the pinned host key is still the host's: same upper dir
    try:
        assert host.read_file("/home/ubuntu/kept.txt") == "still here\n"
        assert autostop.read_marker(host) is None  # /run is new after a boot, like a real reboot
    finally:
        conn.close()
    assert state_of(sandbox_host) == "running"


def test_shutdown_now_with_behaviour_terminate_terminates_the_instance(sandbox_host):
    # the Attribute/Value form: moto 5.2 ignores InstanceInitiatedShutdownBehavior={"Value": ...}
    sandbox_host.ec2.modify_instance_attribute(
        InstanceId=sandbox_host.instance_id, Attribute="instanceInitiatedShutdownBehavior", Value="terminate"
    )
    conn, host = connect(sandbox_host)
    try:
        host.sudo("setsid sh -c 'sleep 1; shutdown -h now' > /dev/null 2>&1 < /dev/null &", check=True)
    finally:
        conn.close()
    assert eventually(lambda: state_of(sandbox_host) == "terminated", timeout=60)
