"""Ctrl-C at every AWS call of provision and teardown (in-process moto): a re-run converges, nothing leaks.

A botocore hook raises KeyboardInterrupt at the Nth API call, for N = 1 .. the calls of a clean run: before
the request is sent, or after its response arrived but before labctl sees it.
"""

from __future__ import annotations

import io
import stat

import boto3
import pytest
from moto import mock_aws

from infra import security_group as groups
from infra.tags import is_ours, resource_name
from labctl.errors import LabError
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning
from labctl.state import key_dir, load_state
from labctl.teardown import teardown
from tests.support.faults import interrupting

from .conftest import REGION, TEST_CIDR

pytestmark = pytest.mark.slow

LAB = "netlab"
OPTIONS = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, cloud_only=True)


def _provision() -> None:
    provisioning.provision(OPTIONS, Report(io.StringIO(), io.StringIO()))


def _teardown() -> None:
    teardown(report=Report(io.StringIO(), io.StringIO()))


def _inventory() -> dict:
    """Everything in the region (ours or not) and the key files in the state dir."""
    ec2 = boto3.client("ec2", region_name=REGION)
    reservations = ec2.describe_instances()["Reservations"]
    gone = ("terminated", "shutting-down")
    live = [i for r in reservations for i in r["Instances"] if i["State"]["Name"] not in gone]
    sgs = [g for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"]
    return {
        "instances": live,
        "groups": sgs,
        "key_pairs": ec2.describe_key_pairs()["KeyPairs"],
        "key_files": sorted(key_dir().iterdir()),
    }


def _assert_converged(found: dict) -> None:
    """The end state of a clean provision: one running instance, one group with 3 rules, one key + file."""
    assert [i["State"]["Name"] for i in found["instances"]] == ["running"]
    assert all(is_ours(i, LAB) for i in found["instances"])
    assert len(found["groups"]) == 1 and is_ours(found["groups"][0], LAB)
    assert set(groups.group_rules(found["groups"][0])) == groups.desired_rules(TEST_CIDR)
    assert [k["KeyName"] for k in found["key_pairs"]] == [resource_name(LAB)]
    assert [f.name for f in found["key_files"]] == [f"{resource_name(LAB)}.pem"]
    assert stat.S_IMODE(found["key_files"][0].stat().st_mode) == 0o600
    state = load_state()
    assert state["instance_ids"] == [found["instances"][0]["InstanceId"]]
    assert state["security_group_id"] == found["groups"][0]["GroupId"]


def _assert_empty(found: dict) -> None:
    assert (found["instances"], found["groups"], found["key_pairs"], found["key_files"]) == ([], [], [], [])


def _assert_names_what_exists(message: str, found: dict, how: tuple[str, ...]) -> None:
    """One line that names every resource that exists now, and how to converge or clean up."""
    assert "\n" not in message
    assert all(command in message for command in how), message
    for instance in found["instances"]:
        assert instance["InstanceId"] in message
    for group in found["groups"]:
        assert group["GroupId"] in message
    for pair in found["key_pairs"]:
        assert f"key pair {pair['KeyName']}" in message
    if not any(found.values()):
        assert "nothing" in message


def _count_calls(monkeypatch, task) -> list[str]:
    with interrupting(monkeypatch) as counter:
        task()
    return counter.calls


@pytest.fixture
def fresh_lab(monkeypatch, tmp_path):
    """Enter a new, empty moto and state dir for each interruption point."""
    runs = iter(range(1, 1000))

    def enter():
        monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / f"state-{next(runs)}"))
        mock = mock_aws()
        mock.start()
        return mock

    return enter


@pytest.mark.parametrize("when", ["before", "after"])
def test_provision_interrupted_at_every_call_reruns_to_the_clean_end_state(monkeypatch, fresh_lab, when):
    mock = fresh_lab()
    calls = _count_calls(monkeypatch, _provision)
    _assert_converged(_inventory())
    mock.stop()
    assert "ec2.RunInstances" in calls and "ec2.CreateKeyPair" in calls
    for at in range(1, len(calls) + 1):
        mock = fresh_lab()
        try:
            with interrupting(monkeypatch, at, when) as interrupter, pytest.raises(LabError) as failure:
                _provision()
            _assert_names_what_exists(str(failure.value), _inventory(), ("fab provision", "fab teardown"))
            _provision()
            _assert_converged(_inventory())
            _teardown()
            _assert_empty(_inventory())
        except AssertionError as exc:
            where = f"interrupted {when} call {at} ({interrupter.interrupted_call})"
            raise AssertionError(f"{where}: {exc}") from exc
        finally:
            mock.stop()


@pytest.mark.parametrize("when", ["before", "after"])
def test_teardown_interrupted_at_every_call_then_teardown_again_leaves_nothing(monkeypatch, fresh_lab, when):
    mock = fresh_lab()
    _provision()
    calls = _count_calls(monkeypatch, _teardown)
    _assert_empty(_inventory())
    mock.stop()
    assert "ec2.TerminateInstances" in calls and "ec2.DeleteKeyPair" in calls
    for at in range(1, len(calls) + 1):
        mock = fresh_lab()
        try:
            _provision()
            with interrupting(monkeypatch, at, when) as interrupter, pytest.raises(LabError) as failure:
                _teardown()
            _assert_names_what_exists(str(failure.value), _inventory(), ("fab teardown",))
            _teardown()
            _assert_empty(_inventory())
        except AssertionError as exc:
            where = f"interrupted {when} call {at} ({interrupter.interrupted_call})"
            raise AssertionError(f"{where}: {exc}") from exc
        finally:
            mock.stop()
