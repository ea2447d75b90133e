"""--auto-stop on moto: shutdown behaviour `stop`, the deadline tags, re-runs that keep or reset them."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

from infra import autostop, instances, uptime
from infra.tags import tag_dict
from labctl.errors import LabError
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning
from labctl.status import status_data, status_lines

from .conftest import TEST_CIDR

ATTRIBUTE = "instanceInitiatedShutdownBehavior"


def provision(**overrides) -> tuple[list[dict], list[str]]:
    out = io.StringIO()
    options = ProvisionOptions(**{"target": "aws", "ssh_cidr": TEST_CIDR, "cloud_only": True, **overrides})
    described = provisioning.provision(options, report=Report(out, io.StringIO()))
    return described, out.getvalue().splitlines()


def behaviour(ec2, instance_id: str) -> str:
    answer = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute=ATTRIBUTE)
    return answer["InstanceInitiatedShutdownBehavior"]["Value"]


def set_behaviour(ec2, instance_id: str, value: str) -> None:
    ec2.modify_instance_attribute(InstanceId=instance_id, Attribute=ATTRIBUTE, Value=value)


def tags_of(ec2, instance_id: str) -> dict:
    return tag_dict(instances.describe_by_ids(ec2, [instance_id])[0])


def test_new_instances_launch_with_shutdown_behaviour_stop(ec2):
    (instance,), _ = provision()
    assert behaviour(ec2, instance["InstanceId"]) == "stop"
    assert autostop.AUTO_STOP_AT_KEY not in tags_of(ec2, instance["InstanceId"])


def test_auto_stop_sets_behaviour_and_tags_and_says_the_host_was_not_touched(ec2, monkeypatch):
    """Also: the security group stays attached (the dict form of the call would drop it in moto)."""
    (instance,), _ = provision()
    iid = instance["InstanceId"]
    set_behaviour(ec2, iid, "terminate")
    now = uptime.utcnow().replace(microsecond=0)
    monkeypatch.setattr(uptime, "utcnow", lambda: now)
    _, lines = provision(auto_stop=2.5)
    assert behaviour(ec2, iid) == "stop"
    tags = tags_of(ec2, iid)
    assert tags[autostop.AUTO_STOP_HOURS_KEY] == "2.5"
    assert tags[autostop.AUTO_STOP_AT_KEY] == autostop.format_deadline(now + timedelta(hours=2.5))
    text = "\n".join(lines)
    assert f"changed      instance {iid} shutdown behaviour: terminate -> stop" in text
    assert f"changed      instance {iid} auto-stop: at {tags[autostop.AUTO_STOP_AT_KEY]} (2.5 h)" in text
    assert "--cloud-only, so the host was not touched (only the tags)" in text
    groups = instances.describe_by_ids(ec2, [iid])[0]["SecurityGroups"]
    assert [g["GroupName"] for g in groups] == ["labctl-netlab"]


def test_rerun_with_the_same_hours_keeps_the_deadline(ec2, monkeypatch):
    (instance,), _ = provision(auto_stop=2)
    first = tags_of(ec2, instance["InstanceId"])[autostop.AUTO_STOP_AT_KEY]
    later = uptime.utcnow() + timedelta(minutes=30)
    monkeypatch.setattr(uptime, "utcnow", lambda: later)
    _, lines = provision(auto_stop=2)
    assert tags_of(ec2, instance["InstanceId"])[autostop.AUTO_STOP_AT_KEY] == first
    assert any(line.startswith("  ok") and "auto-stop: at " + first in line for line in lines)
    assert not any(line.startswith("  changed") for line in lines)


def test_other_hours_or_a_passed_deadline_set_a_new_one(ec2, monkeypatch):
    (instance,), _ = provision(auto_stop=2)
    iid = instance["InstanceId"]
    first = autostop.parse_deadline(tags_of(ec2, iid)[autostop.AUTO_STOP_AT_KEY])
    provision(auto_stop=3)
    assert tags_of(ec2, iid)[autostop.AUTO_STOP_HOURS_KEY] == "3"
    assert autostop.parse_deadline(tags_of(ec2, iid)[autostop.AUTO_STOP_AT_KEY]) > first
    after = first + timedelta(hours=5)  # stopped by the deadline, then started again
    monkeypatch.setattr(uptime, "utcnow", lambda: after)
    provision(auto_stop=3)
    expected = autostop.format_deadline(after + timedelta(hours=3))
    assert tags_of(ec2, iid)[autostop.AUTO_STOP_AT_KEY] == expected


def test_status_shows_the_deadline_from_tags(ec2):
    (instance,), _ = provision(auto_stop=4)
    data = status_data()
    (info,) = data["instances"]
    assert info["auto_stop_at"] == tags_of(ec2, instance["InstanceId"])[autostop.AUTO_STOP_AT_KEY]
    assert info["auto_stop_hours"] == 4.0
    line = f"    auto-stop  at {info['auto_stop_at']} (4 h after it was set)"
    assert line in status_lines(data)


def test_dry_run_changes_nothing(ec2):
    (instance,), _ = provision()
    set_behaviour(ec2, instance["InstanceId"], "terminate")
    _, lines = provision(auto_stop=1, dry_run=True)
    assert behaviour(ec2, instance["InstanceId"]) == "terminate"
    assert autostop.AUTO_STOP_AT_KEY not in tags_of(ec2, instance["InstanceId"])
    assert any("would change" in line and "auto-stop" in line for line in lines)


@pytest.mark.parametrize("bad", ["later", "0.001", "-2", "10000"])
def test_bad_hours_are_one_line(bad):
    with pytest.raises(LabError, match="--auto-stop") as failure:
        autostop.validate_hours(bad)
    assert "\n" not in str(failure.value)


def test_status_says_when_the_deadline_has_passed(ec2, monkeypatch):
    provision(auto_stop=1)
    (info,) = status_data()["instances"]
    assert "1 h after it was set" in "\n".join(status_lines(status_data()))
    later = autostop.parse_deadline(info["auto_stop_at"]) + timedelta(minutes=1)
    monkeypatch.setattr(uptime, "utcnow", lambda: later)
    text = "\n".join(status_lines(status_data()))
    assert f"auto-stop  at {info['auto_stop_at']} (passed: re-run fab provision --auto-stop HOURS" in text


def test_off_removes_the_deadline_tags_and_a_second_off_changes_nothing(ec2):
    (instance,), _ = provision(auto_stop=2)
    _, lines = provision(auto_stop="off")
    assert autostop.AUTO_STOP_AT_KEY not in tags_of(ec2, instance["InstanceId"])
    assert f"  changed      instance {instance['InstanceId']} auto-stop: cancelled" in lines
    _, again = provision(auto_stop="off")
    assert f"  ok           instance {instance['InstanceId']} auto-stop: off" in again
    assert status_data()["instances"][0]["auto_stop_at"] is None


def test_off_and_zero_mean_cancel():
    assert autostop.validate_hours("off") == autostop.validate_hours("0") == autostop.OFF
