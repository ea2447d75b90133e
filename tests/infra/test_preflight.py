"""Issue 14, a student's new account: the instance type and the network path are checked before anything
is created (moto where it can; botocore Stubber with EC2's real error texts where it cannot)."""

from __future__ import annotations

import io

import pytest
from botocore.stub import Stubber

from infra import instance_types, instances, preflight, session
from infra.errors import CloudError, translate
from labctl.errors import LabError
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning

from .conftest import REGION, TEST_CIDR

LAB = "netlab"
# RunInstances on an account on AWS's Free plan (accounts created after 15 July 2025), verbatim
FREE_PLAN_MESSAGE = (
    "The specified instance type is not eligible for Free Tier. For a list of Free Tier instance types, "
    "run 'describe-instance-types' with the filter 'free-tier-eligible=true'."
)


def _provision(**overrides) -> tuple[list[dict], str, str]:
    options = ProvisionOptions(**{**dict(target="aws", ssh_cidr=TEST_CIDR, cloud_only=True), **overrides})
    out, err = io.StringIO(), io.StringIO()
    described = provisioning.provision(options, Report(out, err))
    return described, out.getvalue(), err.getvalue()


def _nothing_created(ec2) -> None:
    assert ec2.describe_key_pairs()["KeyPairs"] == []
    names = {g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    assert names <= {"default"}  # (no default VPC: not even its default group)
    assert instances.find_instances(ec2, LAB) == []


def _offline_ec2():
    """An EC2 client for Stubber only: loopback endpoint, never sent anything."""
    return session.client(session.aws_session(REGION), "ec2", "http://127.0.0.1:9")


# --- 2. the default instance type -------------------------------------------------------------------------


def test_the_default_type_is_free_plan_eligible_and_launches(ec2):
    assert instances.DEFAULT_INSTANCE_TYPE == "t3.micro"
    (instance,), _, err = _provision()
    assert instance["InstanceType"] == "t3.micro"
    (info,) = ec2.describe_instance_types(InstanceTypes=["t3.micro"])["InstanceTypes"]
    assert info["FreeTierEligible"] is True
    assert "not free-plan eligible" not in err


def test_a_type_not_offered_in_the_region_is_refused_before_anything_is_created(ec2):
    assert instance_types.offered_zones(ec2, "a1.medium") == []  # exists, but not in Seoul
    with pytest.raises(LabError) as failure:
        _provision(instance_type="a1.medium")
    message = str(failure.value)
    assert message == (
        f"instance type a1.medium is not offered in {REGION}: use e.g. --instance-type t3.micro, "
        "or another --region"
    )
    _nothing_created(ec2)


def test_an_unknown_type_is_refused_before_anything_is_created(ec2):
    with pytest.raises(
        LabError, match=r"^unknown instance type 't3\.mirco': use e\.g\. --instance-type t3\.micro$"
    ):
        _provision(instance_type="t3.mirco")
    _nothing_created(ec2)


def test_a_type_that_is_not_free_plan_eligible_is_a_warning_not_a_refusal(ec2):
    (instance,), _, err = _provision(instance_type="t2.micro")
    assert instance["InstanceType"] == "t2.micro"  # a paid account may run it
    (warning,) = [line for line in err.splitlines() if "free-plan" in line]
    assert warning.startswith("warning: t2.micro is not free-plan eligible: an account on AWS's Free plan")
    assert "eligible here: c7i-flex.large, m7i-flex.large, t3.micro, t3.small" in warning


def test_the_free_plan_refusal_of_run_instances_is_one_line_naming_the_fix():
    ec2 = _offline_ec2()
    with Stubber(ec2) as stub:
        stub.add_client_error("run_instances", "InvalidParameterCombination", FREE_PLAN_MESSAGE, 400)
        with pytest.raises(Exception) as raised:
            ec2.run_instances(ImageId="ami-1", InstanceType="t2.micro", MinCount=1, MaxCount=1)
    message = str(translate(raised.value))
    assert "\n" not in message
    assert message.startswith("this account is on AWS's Free plan and the instance type is not eligible")
    assert "--instance-type t3.micro" in message


def test_another_invalid_parameter_combination_keeps_aws_text():
    ec2 = _offline_ec2()
    text = "Virtualization type 'hvm' is required for instances of type 't2.micro'."
    with Stubber(ec2) as stub:
        stub.add_client_error("run_instances", "InvalidParameterCombination", text, 400)
        with pytest.raises(Exception) as raised:
            ec2.run_instances(ImageId="ami-1", InstanceType="t2.micro", MinCount=1, MaxCount=1)
    assert str(translate(raised.value)) == f"RunInstances failed: InvalidParameterCombination: {text}"


# --- 5. the network path ----------------------------------------------------------------------------------


def _default_subnets(ec2) -> list[dict]:
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    return sorted(subnets, key=lambda s: s["AvailabilityZone"])


def test_default_subnets_without_public_ips_are_refused_before_anything_is_created(ec2):
    for subnet in _default_subnets(ec2):
        ec2.modify_subnet_attribute(SubnetId=subnet["SubnetId"], MapPublicIpOnLaunch={"Value": False})
    first = _default_subnets(ec2)[0]["SubnetId"]
    with pytest.raises(LabError) as failure:
        _provision()
    assert str(failure.value) == (
        f"the default subnets in {REGION} do not give instances a public IP, so SSH could not reach the lab: "
        f"run `aws ec2 modify-subnet-attribute --subnet-id {first} --map-public-ip-on-launch` and re-run"
    )
    _nothing_created(ec2)


def test_the_instance_goes_to_a_default_subnet_that_maps_public_ips(ec2):
    subnets = _default_subnets(ec2)
    for subnet in subnets[:-1]:
        ec2.modify_subnet_attribute(SubnetId=subnet["SubnetId"], MapPublicIpOnLaunch={"Value": False})
    (instance,), _, _ = _provision()
    assert instance["SubnetId"] == subnets[-1]["SubnetId"]
    assert instance["PublicIpAddress"]


def test_no_default_subnet_is_refused_naming_the_fix(ec2):
    for subnet in _default_subnets(ec2):
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    with pytest.raises(
        LabError, match=r"has no default subnet: create one with `aws ec2 create-default-subnet"
    ):
        _provision()
    _nothing_created(ec2)


def test_no_default_vpc_is_refused_before_anything_is_created(ec2):
    (vpc,) = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    for subnet in _default_subnets(ec2):
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    ec2.delete_vpc(VpcId=vpc["VpcId"])
    with pytest.raises(
        LabError, match=rf"^no default VPC in {REGION}: create one with `aws ec2 create-default-vpc"
    ):
        _provision()
    _nothing_created(ec2)


def test_a_rerun_checks_nothing_again(ec2, monkeypatch):
    _provision()
    calls = []
    monkeypatch.setattr(preflight, "check_launch", lambda *args: calls.append(args))
    _provision()
    assert calls == []


def test_check_launch_names_the_type_and_picks_the_first_zone(ec2):
    vpc_id = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    plan = preflight.check_launch(ec2, REGION, vpc_id, "t3.micro")
    assert plan.instance_type == instance_types.TypeInfo("t3.micro", 2, True)
    assert plan.subnet_id == _default_subnets(ec2)[0]["SubnetId"]
    assert plan.warnings == []


def test_a_cloud_error_is_raised_not_printed(ec2):
    with pytest.raises(CloudError):
        preflight.check_launch(ec2, REGION, "vpc-0000", "t3.micro")


def test_the_eligible_types_named_are_amd64_only():
    """The lab's Ubuntu image is amd64: an arm64 free-plan type (t4g) is never suggested."""

    class Pages:
        def paginate(self, **kwargs):
            assert kwargs["Filters"] == [{"Name": "free-tier-eligible", "Values": ["true"]}]
            arm = {"InstanceType": "t4g.micro", "ProcessorInfo": {"SupportedArchitectures": ["arm64"]}}
            amd = {"InstanceType": "t3.micro", "ProcessorInfo": {"SupportedArchitectures": ["x86_64"]}}
            return [{"InstanceTypes": [arm, amd]}]

    class EC2:
        def get_paginator(self, name):
            assert name == "describe_instance_types"
            return Pages()

    assert instance_types.free_plan_types(EC2()) == ["t3.micro"]
