"""provision / plan / status / teardown end to end against in-process moto."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest

from infra import instances
from infra.tags import resource_name
from labctl.errors import LabError
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning
from labctl.state import STATE_FILE, load_state, state_dir
from labctl.status import status_data
from labctl.teardown import teardown

from .conftest import REGION, TEST_CIDR

LAB = "netlab"


def _options(**overrides) -> ProvisionOptions:
    defaults = dict(target="aws", ssh_cidr=TEST_CIDR, cloud_only=True)
    return ProvisionOptions(**{**defaults, **overrides})


def _run(func, *args, **kwargs) -> tuple[object, list[str]]:
    """Call a cloud task with a captured report; returns its value and the printed lines."""
    out = io.StringIO()
    value = func(*args, report=Report(out, io.StringIO()), **kwargs)
    return value, out.getvalue().splitlines()


def _inventory(ec2) -> dict:
    """Everything in the region that could be ours, to compare before/after."""
    live = instances.find_instances(ec2, LAB)
    return {
        "instances": sorted((i["InstanceId"], i["State"]["Name"]) for i in live),
        "groups": sorted(
            (g["GroupId"], str(sorted(map(str, g["IpPermissions"]))))
            for g in ec2.describe_security_groups()["SecurityGroups"]
        ),
        "keys": sorted(k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]),
    }


def test_provision_creates_key_group_and_one_tagged_instance(ec2):
    described, lines = _run(provisioning.provision, _options())
    assert lines[0] == f"provision: target aws, region {REGION}, lab {LAB}"
    assert len(described) == 1
    instance = described[0]
    assert instance["State"]["Name"] == "running"
    assert instance["InstanceType"] == "t3.micro"  # the default (issue 14: free-plan eligible)
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags == {"labctl:project": "labctl", "labctl:lab": LAB, "Name": resource_name(LAB)}
    assert any(instance["InstanceId"] in line and instance["PublicIpAddress"] in line for line in lines)
    assert lines[-1] == "done"
    key_file = Path(load_state()["key_file"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_second_provision_creates_and_changes_nothing_and_says_so(ec2):
    _run(provisioning.provision, _options())
    before = _inventory(ec2)
    _, lines = _run(provisioning.provision, _options())
    assert _inventory(ec2) == before
    assert lines[-1].startswith("nothing to do")
    assert not any(line.strip().startswith(("created", "changed", "started")) for line in lines)


def test_stopped_instance_is_started_not_duplicated(ec2):
    (first,), _ = _run(provisioning.provision, _options())
    ec2.stop_instances(InstanceIds=[first["InstanceId"]])
    described, lines = _run(provisioning.provision, _options())
    assert [i["InstanceId"] for i in described] == [first["InstanceId"]]
    assert described[0]["State"]["Name"] == "running"
    assert any(line.strip().startswith("started") and first["InstanceId"] in line for line in lines)
    assert len(instances.find_instances(ec2, LAB)) == 1


def test_terminated_instance_is_replaced(ec2):
    (first,), _ = _run(provisioning.provision, _options())
    ec2.terminate_instances(InstanceIds=[first["InstanceId"]])
    (second,), _ = _run(provisioning.provision, _options())
    assert second["InstanceId"] != first["InstanceId"]
    assert [i["InstanceId"] for i in instances.find_instances(ec2, LAB)] == [second["InstanceId"]]


def test_interrupted_after_the_group_before_the_instance_then_rerun_converges(ec2, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(LabError) as failure:
        patch.setattr(instances, "ensure_instances", interrupt)
        _run(provisioning.provision, _options())
    message = str(failure.value)
    assert "\n" not in message
    assert "created key pair labctl-netlab" in message and "created security group labctl-netlab" in message
    assert "Re-run `fab provision` to converge, or `fab teardown`" in message
    assert instances.find_instances(ec2, LAB) == []

    described, lines = _run(provisioning.provision, _options())
    assert len(described) == 1
    statuses = [
        line.split()[0] for line in lines[1:] if line.startswith("  ") and not line.startswith("  image")
    ]
    assert statuses == ["ok", "ok", "created"]
    assert (
        len(
            ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [resource_name(LAB)]}])[
                "SecurityGroups"
            ]
        )
        == 1
    )


def test_plan_changes_nothing_and_lists_what_would_be_created(ec2):
    before = _inventory(ec2)
    _, lines = _run(provisioning.plan, _options())
    assert _inventory(ec2) == before
    assert lines[0].startswith("plan: target aws")
    assert sum("would create" in line for line in lines) == 3
    assert not (state_dir() / "keys" / "labctl-netlab.pem").exists()


def test_plan_after_provision_says_nothing_to_do(ec2):
    _run(provisioning.provision, _options())
    _, lines = _run(provisioning.plan, _options())
    assert lines[-1].startswith("nothing to do")


def test_dry_run_provision_is_the_plan(ec2):
    before = _inventory(ec2)
    _, lines = _run(provisioning.provision, _options(dry_run=True))
    assert _inventory(ec2) == before
    assert any("would create" in line for line in lines)


def _make_lookalikes(ec2) -> dict:
    """Resources with our names but without our tags, in another VPC where a name clash is allowed."""
    vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.99.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=resource_name(LAB), Description="not ours", VpcId=vpc)[
        "GroupId"
    ]
    image = ec2.describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
    instance = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": resource_name(LAB)}]}
        ],
    )["Instances"][0]["InstanceId"]
    return {"group": group, "instance": instance}


def test_teardown_removes_everything_of_ours_and_keeps_lookalikes(ec2):
    _run(provisioning.provision, _options())
    key_file = Path(load_state()["key_file"])
    lookalikes = _make_lookalikes(ec2)

    results, lines = _run(teardown)

    assert lines[0] == f"teardown: target aws, region {REGION}, lab {LAB}"
    assert instances.find_instances(ec2, LAB) == []
    assert not [g for g in ec2.describe_security_groups()["SecurityGroups"] if "Tags" in g and g.get("Tags")]
    assert resource_name(LAB) not in [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]]
    assert not key_file.exists()
    assert ec2.describe_security_groups(GroupIds=[lookalikes["group"]])["SecurityGroups"]
    reservation = ec2.describe_instances(InstanceIds=[lookalikes["instance"]])["Reservations"][0]
    assert reservation["Instances"][0]["State"]["Name"] == "running"
    reported = [line for line in lines if line.strip().startswith("not ours")]
    assert any(lookalikes["group"] in line for line in reported)
    assert any(lookalikes["instance"] in line for line in reported)


def test_teardown_keeps_an_untagged_lookalike_key_pair(ec2):
    ec2.create_key_pair(KeyName=resource_name(LAB))
    _, lines = _run(teardown, target="aws")
    assert ec2.describe_key_pairs(KeyNames=[resource_name(LAB)])["KeyPairs"]
    assert any("not ours" in line and "key pair" in line for line in lines)


def test_second_teardown_says_nothing_to_do(ec2):
    _run(provisioning.provision, _options())
    _run(teardown)
    results, lines = _run(teardown)
    assert not any(r.is_change for r in results)
    assert lines[-1].startswith("nothing to do")


def test_teardown_keep_key_keeps_pair_and_file(ec2):
    _run(provisioning.provision, _options())
    key_file = Path(load_state()["key_file"])
    _run(teardown, keep_key=True)
    assert key_file.exists()
    assert ec2.describe_key_pairs(KeyNames=[resource_name(LAB)])["KeyPairs"]
    assert load_state()["key_file"] == str(key_file)
    _, lines = _run(provisioning.provision, _options())
    assert any(line.strip().startswith("ok") and "key pair" in line for line in lines)


STATUS_KEYS = {
    "target",
    "region",
    "lab",
    "endpoint",
    "sandbox",
    "instances",
    "security_group",
    "key_pair",
    "not_ours",
    "uptime_warn_hours",  # issue 7
    "warnings",
    "class",  # issue 6: class mode
    "cost",  # issue 14 item 7: hourly estimate
    "sandbox_down",  # issue 12 item 3: a sandbox lab whose daemon is down (None otherwise)
}
INSTANCE_KEYS = {
    "id",
    "state",
    "instance_type",
    "image_id",
    "public_ip",
    "public_dns",
    "private_ip",
    "key_name",
    "key_file",
    "launch_time",  # issue 7
    "uptime_hours",
    "auto_stop_at",
    "auto_stop_hours",
    "connect",
    "cost",  # issue 14 item 7
}


def test_status_json_has_the_documented_stable_keys(ec2):
    empty = status_data(target="aws")
    assert set(empty) == STATUS_KEYS
    assert (empty["instances"], empty["security_group"], empty["key_pair"]) == ([], None, None)
    _run(provisioning.provision, _options())
    data = json.loads(json.dumps(status_data()))
    assert set(data) == STATUS_KEYS
    assert data["endpoint"] is None and data["target"] == "aws" and data["region"] == REGION
    (instance,) = data["instances"]
    assert set(instance) == INSTANCE_KEYS
    assert set(data["security_group"]) == {"id", "name", "vpc_id", "rules"}
    assert {(r["protocol"], r["from_port"], r["to_port"]) for r in data["security_group"]["rules"]} == {
        ("tcp", 22, 22),
        ("icmp", -1, -1),
        ("tcp", 12345, 12345),
    }
    assert set(data["key_pair"]) == {"name", "type", "file", "file_exists"}
    documented = (Path(__file__).parents[3] / "infra" / "STATUS-JSON.md").read_text()
    for key in STATUS_KEYS | INSTANCE_KEYS | set(data["key_pair"]) | set(data["security_group"]):
        assert f"`{key}`" in documented, key


def test_provision_rebuilds_a_missing_state_file_from_tags(ec2):
    """status is read-only (issue 12 item 4): the next provision rebuilds the file, reusing the lab."""
    (instance,), _ = _run(provisioning.provision, _options())
    group_id = load_state()["security_group_id"]
    (state_dir() / STATE_FILE).unlink()
    status_data(target="aws", name=LAB)
    assert not (state_dir() / STATE_FILE).exists()
    (again,), _ = _run(provisioning.provision, _options(name=LAB))
    assert again["InstanceId"] == instance["InstanceId"]
    rebuilt = load_state()
    assert rebuilt["instance_ids"] == [instance["InstanceId"]]
    assert rebuilt["security_group_id"] == group_id
    assert rebuilt["target"] == "aws" and rebuilt["lab"] == LAB


def test_labs_with_different_names_do_not_see_each_other(ec2):
    _run(provisioning.provision, _options(name="alpha"))
    _run(provisioning.provision, _options(name="beta"))
    assert len(instances.find_instances(ec2, "alpha")) == 1
    _run(teardown, name="alpha")
    assert instances.find_instances(ec2, "alpha") == []
    assert len(instances.find_instances(ec2, "beta")) == 1


def test_instance_type_and_release_options_are_used(ec2):
    (instance,), _ = _run(provisioning.provision, _options(instance_type="t3.small", release="24.04"))
    image = ec2.describe_images(ImageIds=[instance["ImageId"]])["Images"][0]
    assert instance["InstanceType"] == "t3.small"
    assert "noble-24.04" in image["Name"]


def test_several_instances_are_converged_to_the_count(ec2):
    described, _ = _run(provisioning.provision, _options(count=2))
    assert len(described) == 2
    ec2.stop_instances(InstanceIds=[described[0]["InstanceId"]])
    again, lines = _run(provisioning.provision, _options(count=2))
    assert sorted(i["InstanceId"] for i in again) == sorted(i["InstanceId"] for i in described)
    assert all(i["State"]["Name"] == "running" for i in again)
    assert sum(line.strip().startswith("started") for line in lines) == 1
