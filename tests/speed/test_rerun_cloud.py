"""A re-run's cloud part: each resource described once, no waiter, no console read; drift still found."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import boto3
import pytest

from infra import console, pinned_keys, session
from infra.results import CREATED, STARTED
from labctl import host_tasks, targets
from labctl.errors import LabError
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning
from labctl.state import LabState, load_state, state_dir
from labctl.teardown import teardown
from tests.infra.conftest import REGION, TEST_CIDR, aws, isolated_aws  # noqa: F401 (fixtures: moto, isolation)
from tests.support.faults import interrupting

pytestmark = pytest.mark.usefixtures("aws")

HOST_KEY = ("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIBvTGIka/lWjVmASGBrXOkrWSgJ+5pYDMVlwVijfNYQ3")
CONSOLE = (
    f"-----BEGIN SSH HOST KEY KEYS-----\n{HOST_KEY[0]} {HOST_KEY[1]} root@host\n"
    "-----END SSH HOST KEY KEYS-----\n"
)


class Recorded:
    """What the host step and the console would have been asked (moto's addresses are nobody's)."""

    def __init__(self) -> None:
        self.host_steps: list[list] = []
        self.consoles: list[str] = []
        self.early: list[list] = []


@pytest.fixture
def recorded(monkeypatch) -> Recorded:
    seen = Recorded()
    monkeypatch.setattr(host_tasks, "provision_hosts", lambda hosts, *a, **k: seen.host_steps.append(hosts))

    def console_text(ec2, instance_id, latest=False):
        seen.consoles.append(instance_id)
        return CONSOLE

    monkeypatch.setattr(console, "console_output", console_text)
    monkeypatch.setattr("lab.connect_early.start", lambda hosts, config=None: seen.early.append(hosts))
    return seen


def provision(**changes):
    options = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, **changes)
    report = Report(io.StringIO())
    provisioning.provision(options, report)
    return report


def test_a_rerun_describes_each_resource_once_and_reuses_the_pinned_keys(recorded, monkeypatch):
    provision()
    (first_hosts,) = recorded.host_steps
    with interrupting(monkeypatch) as api:
        provision()
    assert [call for call in api.calls if call.startswith("ec2.")] == [
        "ec2.DescribeImages",
        "ec2.DescribeVpcs",
        "ec2.DescribeInstances",  # first: whether a launch (and so the launch checks) is needed
        "ec2.DescribeKeyPairs",
        "ec2.DescribeSecurityGroups",
    ]
    assert recorded.consoles == [first_hosts[0].instance_id]  # read on the first run only
    assert recorded.host_steps[1] == first_hosts
    assert recorded.early == [[], first_hosts]  # the re-run started SSH to the same host early


def test_a_stopped_instance_is_started_and_waited_for(recorded):
    ec2 = boto3.client("ec2", region_name=REGION)
    provision()
    instance_id = recorded.host_steps[0][0].instance_id
    ec2.stop_instances(InstanceIds=[instance_id])
    report = provision()
    assert any(r.status == STARTED and instance_id in r.resource for r in report.results)
    assert [h.instance_id for h in recorded.host_steps[1]] == [instance_id]


def test_a_terminated_instance_is_replaced_and_its_console_read(recorded):
    ec2 = boto3.client("ec2", region_name=REGION)
    provision()
    old = recorded.host_steps[0][0].instance_id
    ec2.terminate_instances(InstanceIds=[old])
    report = provision()
    (new,) = recorded.host_steps[1]
    assert new.instance_id != old and any(r.status == CREATED for r in report.results)
    assert recorded.consoles == [old, new.instance_id]


def test_a_drifted_security_group_is_repaired(recorded):
    ec2 = boto3.client("ec2", region_name=REGION)
    provision()
    group_id = load_state()["security_group_id"]
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=group["IpPermissions"][:1])
    report = provision()
    assert any(r.is_change and r.message.startswith("added to") for r in report.results)


def test_a_missing_key_file_stops_the_host_step(recorded):
    provision(cloud_only=True)
    Path(load_state()["key_file"]).unlink()
    with pytest.raises(LabError, match="key file .* is missing"):
        targets.host_targets()


def test_keys_remembered_per_instance_across_its_boots(tmp_path):
    """Issue 14: cloud-init prints the keys once per instance, so a stop/start (new launch time, new address)
    keeps them; only another instance id does not."""
    instance = {
        "InstanceId": "i-1",
        "LaunchTime": "2026-11-26 10:00:00+00:00",
        "PublicIpAddress": "198.51.100.9",
    }
    pinned_keys.remember_keys(tmp_path, instance, (HOST_KEY,))
    assert pinned_keys.remembered_keys(tmp_path, instance) == (HOST_KEY,)
    assert (tmp_path / pinned_keys.PINNED_KEYS_FILE).stat().st_mode & 0o777 == 0o600
    restarted = dict(instance, LaunchTime="2026-11-26 11:00:00+00:00")
    moved = dict(instance, PublicIpAddress="198.51.100.10")
    assert pinned_keys.remembered_keys(tmp_path, restarted) == (HOST_KEY,)
    assert pinned_keys.remembered_keys(tmp_path, moved) == (HOST_KEY,)
    assert pinned_keys.remembered_keys(tmp_path, dict(instance, InstanceId="i-2")) == ()
    pinned_keys.forget_keys(tmp_path, "i-1")
    assert pinned_keys.remembered_keys(tmp_path, instance) == ()


def test_a_damaged_keys_file_counts_as_empty(tmp_path):
    (tmp_path / pinned_keys.PINNED_KEYS_FILE).write_text("{not json")
    assert pinned_keys.remembered_keys(tmp_path, {"InstanceId": "i-1"}) == ()
    assert pinned_keys.last_seen(tmp_path, "i-1") is None


def test_remembered_targets_are_exactly_the_next_runs_targets(recorded):
    provision(cloud_only=True)
    hosts = targets.host_targets()
    assert targets.remembered_host_targets() == hosts


def test_remembered_sandbox_targets_keep_to_the_sandbox_net(recorded):
    provision(cloud_only=True)
    targets.host_targets()  # moto's address is outside 198.51.100.0/24
    state = LabState.load()
    assert targets.remembered_host_targets(replace(state, target="sandbox")) == []
    assert targets.remembered_host_targets(replace(state, endpoint="http://127.0.0.1:5000")) == []


def test_provision_with_auto_stop_builds_one_ec2_client_and_hands_it_down(recorded, monkeypatch):
    """No cache: the task connects once and passes the Cloud to the host targets and auto-stop."""
    built: list[str] = []
    factory = session.client

    def counting_client(boto_session, service, *args, **kwargs):
        built.append(service)
        return factory(boto_session, service, *args, **kwargs)

    monkeypatch.setattr(session, "client", counting_client)
    provision(auto_stop=2)
    assert built.count("ec2") == 1
    assert len(recorded.host_steps) == 1


def test_teardown_forgets_the_remembered_keys(recorded):
    provision()
    pinned = state_dir() / pinned_keys.PINNED_KEYS_FILE
    assert pinned.exists()
    teardown(report=Report(io.StringIO()))
    assert not pinned.exists()
