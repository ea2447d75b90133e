"""fab teardown --all-labs on moto: every lab of ours in the region goes; look-alikes stay."""

from __future__ import annotations

import io
from pathlib import Path

from infra import instances
from infra.tags import tag_dict
from labctl import all_labs
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning
from labctl.state import key_dir, load_state

from .conftest import TEST_CIDR


def provision(name: str) -> dict:
    options = ProvisionOptions(target="aws", name=name, ssh_cidr=TEST_CIDR, cloud_only=True)
    (instance,) = provisioning.provision(options, report=Report(io.StringIO(), io.StringIO()))
    return instance


def teardown_all() -> list[str]:
    out = io.StringIO()
    all_labs.teardown_all_labs("aws", report=Report(out, io.StringIO()))
    return out.getvalue().splitlines()


def live_instances(ec2) -> list[dict]:
    reservations = ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": instances.NOT_TERMINATED}]
    )["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def make_lookalikes(ec2, image_id: str) -> dict:
    """Resources named like a lab's, some even with our lab tag, but without our project tag."""
    group_id = ec2.create_security_group(GroupName="labctl-other", Description="not ours")["GroupId"]
    ec2.create_key_pair(KeyName="labctl-other", KeyType="ed25519")
    instance = ec2.run_instances(
        ImageId=image_id,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": "Name", "Value": "labctl-first"}, {"Key": "labctl:lab", "Value": "first"}],
            }
        ],
    )["Instances"][0]
    return {"group": group_id, "key": "labctl-other", "instance": instance["InstanceId"]}


def test_two_labs_are_listed_then_removed_and_lookalikes_stay(ec2):
    first = provision("first")
    second = provision("second")
    key_files = [Path(key_dir() / f"labctl-{lab}.pem") for lab in ("first", "second")]
    assert all(path.exists() for path in key_files)
    lookalike = make_lookalikes(ec2, first["ImageId"])

    lines = teardown_all()
    assert lines[0] == "teardown --all-labs: target aws, region ap-northeast-2, every lab of ours"
    assert lines[1] == "found 2 lab(s) of ours in ap-northeast-2:"
    assert lines[2].startswith("  lab first: 1 instances, 1 security groups, 1 key pairs (")
    assert first["InstanceId"] in lines[2] and second["InstanceId"] in lines[3]
    assert any(f"deleted      instance {second['InstanceId']}" in line for line in lines)
    assert lines[-1] == "done"

    assert [i["InstanceId"] for i in live_instances(ec2)] == [lookalike["instance"]]
    groups = {g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    assert "labctl-other" in groups and not {"labctl-first", "labctl-second"} & groups
    assert [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]] == ["labctl-other"]
    assert not any(path.exists() for path in key_files)


def test_a_second_run_finds_nothing_and_says_so(ec2):
    provision("only")
    teardown_all()
    lines = teardown_all()
    assert lines[1] == "found 0 lab(s) of ours in ap-northeast-2"
    assert lines[-1] == "nothing to do: no lab of ours in ap-northeast-2"


def test_a_lab_with_only_a_key_pair_left_is_found_too(ec2):
    provision("half")
    instance_ids = [i["InstanceId"] for i in instances.find_instances(ec2, "half")]
    ec2.terminate_instances(InstanceIds=instance_ids)
    for group in ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["labctl-half"]}])[
        "SecurityGroups"
    ]:
        ec2.delete_security_group(GroupId=group["GroupId"])
    assert list(all_labs.find_labs(ec2)) == ["half"]
    lines = teardown_all()
    assert "  lab half: 1 key pairs (labctl-half)" in lines
    assert ec2.describe_key_pairs()["KeyPairs"] == []


def test_the_recorded_lab_is_forgotten(ec2):
    provision("mine")
    assert load_state()["security_group_id"]
    teardown_all()
    state = load_state()
    assert state["lab"] == "mine" and "security_group_id" not in state and "key_file" not in state


def test_find_labs_ignores_resources_without_the_project_tag(ec2):
    image = provision("real")["ImageId"]
    make_lookalikes(ec2, image)
    found = all_labs.find_labs(ec2)
    assert list(found) == ["real"]
    assert all(
        tag_dict(i).get("labctl:project") != "labctl"
        for i in live_instances(ec2)
        if i["InstanceId"] not in found["real"]["instances"]
    )
