"""The daemon's life: start once, refuse to stop while busy, stop and leave nothing; a SIGKILLed daemon's
leftovers are found and removed by cleanup_orphans, and nothing else is touched."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from sandbox import cgroups, control, network
from sandbox.registry import live_daemons, registry_dir
from sandbox.testhost import canonical_focal_ami, sandbox_client, stop_sandbox, wait_for_port
from tests.support.sandbox import (
    eventually,
    nothing_of_ours,
    ours_on_machine,
    processes_marked_by,
    running_in_parallel,
)

pytestmark = pytest.mark.root


@pytest.fixture
def state_dir(rootfs, tmp_path):
    """A fresh state dir whose daemon (if any) is stopped afterwards, also when the test failed."""
    yield tmp_path
    try:
        stop_sandbox(tmp_path)
    finally:
        control.cleanup_orphans()


def ssh_group(ec2) -> str:
    """A security group open for SSH from the operator's bridge address (the default group admits nothing)."""
    by_name = [{"Name": "group-name", "Values": ["ssh"]}]
    groups = ec2.describe_security_groups(Filters=by_name)["SecurityGroups"]
    if groups:
        return groups[0]["GroupId"]
    group_id = ec2.create_security_group(GroupName="ssh", Description="ssh")["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": control.SANDBOX_SSH_CIDR}],
            }
        ],
    )
    return group_id


def launch(endpoint: str, count: int = 1) -> list[dict]:
    ec2 = sandbox_client(endpoint)
    instances = ec2.run_instances(
        ImageId=canonical_focal_ami(ec2),
        InstanceType="t2.micro",
        MinCount=count,
        MaxCount=count,
        SecurityGroupIds=[ssh_group(ec2)],
    )["Instances"]
    for instance in instances:
        wait_for_port(instance["PublicIpAddress"])
    return instances


def assert_nothing_left(pid: int, instances: list[dict], reserved_for: Path | None = None) -> None:
    """Nothing of daemon `pid` remains but, when `reserved_for` (its sandbox dir) is given, the reservations
    of its saved instances' addresses; nothing of ours at all when no other sandbox runs on this machine and
    no other test runs."""
    assert not network.pid_alive(pid) and processes_marked_by(pid) == []
    ours = ours_on_machine()
    for instance in instances:
        assert network.netns_name(instance["InstanceId"]) not in ours["netns"]
        assert network.veth_name(instance["InstanceId"]) not in ours["veths"]
    mine = [lease for lease in ours["leases"] if lease["owner"] == pid]
    assert all(reserved_for and lease.get("reserved_for") == str(reserved_for) for lease in mine)
    if not running_in_parallel() and not live_daemons():  # (asked after `ours` was taken)
        assert ours == nothing_of_ours()


def daemon_pid(state_dir) -> int:
    return json.loads((state_dir / "sandbox" / "daemon.json").read_text())["pid"]


def test_ensure_running_starts_one_daemon_and_reuses_it(state_dir):
    endpoint = control.ensure_running(state_dir)
    assert endpoint.startswith("http://127.0.0.1:")
    assert control.ensure_running(state_dir) == endpoint
    assert control.running_endpoint(state_dir) == endpoint
    report = control.status(state_dir)
    assert report["running"] and report["pid"] == daemon_pid(state_dir) and report["hosts"] == []
    assert report["host_os"] == "Debian GNU/Linux 12 (bookworm)"
    assert oct((state_dir / "sandbox").stat().st_mode & 0o777) == "0o700"


def test_shutdown_waits_for_instances_then_leaves_nothing(state_dir):
    endpoint = control.ensure_running(state_dir)
    pid = daemon_pid(state_dir)
    (instance,) = launch(endpoint)
    stopped = sandbox_client(endpoint)
    stopped.stop_instances(InstanceIds=[instance["InstanceId"]])
    assert control.shutdown_if_idle(state_dir) is False  # a stopped instance still counts
    assert control.running_endpoint(state_dir) == endpoint

    stopped.terminate_instances(InstanceIds=[instance["InstanceId"]])
    assert control.shutdown_if_idle(state_dir) is True
    assert control.running_endpoint(state_dir) is None
    assert not (state_dir / "sandbox").exists()
    assert_nothing_left(pid, [instance])
    assert control.shutdown_if_idle(state_dir) is True  # again: nothing to do


def test_cleanup_orphans_after_a_killed_daemon_removes_everything(state_dir):
    endpoint = control.ensure_running(state_dir)
    instances = launch(endpoint, count=2)
    pid = daemon_pid(state_dir)
    names = {network.netns_name(i["InstanceId"]) for i in instances}
    assert names <= set(ours_on_machine()["netns"])

    os.kill(pid, signal.SIGKILL)
    eventually(lambda: not network.pid_alive(pid))
    assert processes_marked_by(pid), "the hosts outlive their daemon until cleaned"
    assert control.running_endpoint(state_dir) is None

    removed = control.cleanup_orphans()
    # Another sandbox starting in parallel (tests may run in parallel) may have cleaned some of it first:
    # what matters is that it is all gone now, and that a second cleanup finds nothing more of it.
    assert not (registry_dir() / str(pid)).exists()
    assert_nothing_left(pid, instances, reserved_for=state_dir / "sandbox")  # its instances come back
    assert removed, "the killed daemon left something to clean"
    ids = [i["InstanceId"] for i in instances]
    again = control.cleanup_orphans()
    assert not [line for line in again if str(pid) in line or any(i[2:] in line for i in ids)]


def test_cleanup_orphans_leaves_a_live_daemon_alone(state_dir, tmp_path_factory):
    endpoint = control.ensure_running(state_dir)
    (instance,) = launch(endpoint)
    instance_id, pid = instance["InstanceId"], daemon_pid(state_dir)
    removed = control.cleanup_orphans()  # other sandboxes' orphans (tests may run in parallel) may go
    assert not [line for line in removed if str(pid) in line or instance_id[2:] in line]
    assert network.pid_alive(pid) and processes_marked_by(pid)
    assert network.netns_name(instance_id) in network.list_netns()
    assert network.veth_name(instance_id) in network.list_veths()
    assert instance_id in cgroups.all_instances()
    assert [lease["owner"] for lease in network.all_leases() if lease["instance"] == instance_id] == [pid]
    wait_for_port(instance["PublicIpAddress"])


def test_two_state_dirs_run_side_by_side_with_distinct_addresses(state_dir, tmp_path_factory):
    other = tmp_path_factory.mktemp("other-state")
    try:
        first = launch(control.ensure_running(state_dir))[0]["PublicIpAddress"]
        second = launch(control.ensure_running(other))[0]["PublicIpAddress"]
        assert first != second
        assert control.running_endpoint(state_dir) != control.running_endpoint(other)
        stop_sandbox(other)
        wait_for_port(first)  # the first sandbox keeps its bridge and host
    finally:
        stop_sandbox(other)


def test_not_root_is_one_clear_line(monkeypatch, tmp_path):
    from labctl.errors import LabError

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root") as raised:
        control.ensure_running(tmp_path)
    assert "\n" not in str(raised.value)


def test_a_missing_command_names_its_package(monkeypatch, tmp_path):
    from labctl.errors import LabError

    real_which = control.shutil.which
    monkeypatch.setattr(
        control.shutil,
        "which",
        lambda cmd, path=None: None if cmd == "debootstrap" else real_which(cmd, path=path),
    )
    with pytest.raises(LabError, match="apt-get install debootstrap"):
        control.ensure_running(tmp_path)


def test_a_daemon_whose_state_dir_vanished_stops_and_cleans_up(state_dir):
    endpoint = control.ensure_running(state_dir)
    (instance,) = launch(endpoint)
    pid = daemon_pid(state_dir)
    shutil.rmtree(state_dir / "sandbox")
    eventually(lambda: not network.pid_alive(pid))
    assert_nothing_left(pid, [instance])


def test_an_outdated_rootfs_is_not_replaced_under_running_hosts(state_dir, monkeypatch):
    from labctl.errors import LabError
    from sandbox import rootfs

    control.ensure_running(state_dir)
    monkeypatch.setattr(rootfs, "recipe_stamp", lambda kind=rootfs.BOOT_KIND: "a-changed-recipe")
    with pytest.raises(LabError, match="outdated but sandbox daemons still use it"):
        rootfs.ensure_rootfs(say=lambda line: None)
    assert (rootfs.rootfs_path() / rootfs.STAMP_FILE).exists()
