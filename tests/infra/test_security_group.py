"""The lab's security group: exact rules, no phantom drift, drift repaired, deletion with backoff."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from infra import security_group as groups
from infra.results import CHANGED, CREATED, DELETED, OK
from infra.tags import resource_name
from labctl.errors import LabError

from .conftest import REGION, TEST_CIDR

LAB = "netlab"


def _ensure(ec2, cidr=TEST_CIDR, dry_run=False):
    return groups.ensure_security_group(ec2, LAB, groups.default_vpc_id(ec2, REGION), cidr, dry_run)


def _rules_in_ec2(ec2, group_id):
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    return groups.normalize(group["IpPermissions"])


def test_normalize_treats_icmp_and_protocol_numbers_alike():
    from_ec2 = [
        {"IpProtocol": "1", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        {"IpProtocol": "icmp", "IpRanges": [{"CidrIp": "10.1.0.0/16"}]},
        {
            "IpProtocol": "6",
            "FromPort": 22,
            "ToPort": 22,
            "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "x"}],
        },
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-1"}]},
    ]
    assert groups.normalize(from_ec2) == {
        groups.Rule("icmp", -1, -1, "10.0.0.0/8"),
        groups.Rule("icmp", -1, -1, "10.1.0.0/16"),
        groups.Rule("tcp", 22, 22, "10.0.0.0/8"),
        groups.Rule("-1", -1, -1, "sg:sg-1"),
    }


def test_created_with_exactly_the_three_lab_rules_and_our_tags(ec2):
    results, group_id = _ensure(ec2)
    assert [r.status for r in results] == [CREATED]
    assert _rules_in_ec2(ec2, group_id) == groups.desired_rules(TEST_CIDR)
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    assert group["GroupName"] == resource_name(LAB)
    assert group["Description"].isascii()
    assert {"Key": "labctl:lab", "Value": LAB} in group["Tags"]


def test_second_run_changes_nothing_and_icmp_is_no_drift(ec2):
    _, group_id = _ensure(ec2)
    results, again = _ensure(ec2)
    assert again == group_id
    assert [(r.status, r.is_change) for r in results] == [(OK, False)]
    assert (
        len(
            ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [resource_name(LAB)]}])[
                "SecurityGroups"
            ]
        )
        == 1
    )


def test_drift_is_repaired_missing_added_extra_revoked_each_reported(ec2):
    _, group_id = _ensure(ec2)
    icmp = groups.Rule("icmp", -1, -1, TEST_CIDR)
    http = groups.Rule("tcp", 80, 80, "0.0.0.0/0")
    ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=[groups.to_permission(icmp)])
    ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[groups.to_permission(http)])

    results, _ = _ensure(ec2)

    assert {(r.status, r.resource) for r in results} == {
        (CHANGED, f"rule {icmp.describe()}"),
        (CHANGED, f"rule {http.describe()}"),
    }
    assert _rules_in_ec2(ec2, group_id) == groups.desired_rules(TEST_CIDR)


def test_changed_source_cidr_replaces_all_three_rules(ec2):
    _, group_id = _ensure(ec2)
    results, _ = _ensure(ec2, cidr="198.51.100.1/32")
    assert len(results) == 6
    assert _rules_in_ec2(ec2, group_id) == groups.desired_rules("198.51.100.1/32")


def test_dry_run_reports_drift_without_repairing_it(ec2):
    _, group_id = _ensure(ec2)
    ec2.revoke_security_group_ingress(
        GroupId=group_id, IpPermissions=[groups.to_permission(groups.Rule("tcp", 22, 22, TEST_CIDR))]
    )
    results, _ = _ensure(ec2, dry_run=True)
    assert [(r.status, r.planned) for r in results] == [(CHANGED, True)]
    assert groups.Rule("tcp", 22, 22, TEST_CIDR) not in _rules_in_ec2(ec2, group_id)


def test_untagged_group_with_our_name_blocks_provision_and_is_untouched(ec2):
    vpc_id = groups.default_vpc_id(ec2, REGION)
    foreign = ec2.create_security_group(
        GroupName=resource_name(LAB), Description="someone else", VpcId=vpc_id
    )
    with pytest.raises(LabError, match="has no labctl tags"):
        _ensure(ec2)
    assert ec2.describe_security_groups(GroupIds=[foreign["GroupId"]])["SecurityGroups"]


def test_no_default_vpc_is_a_clear_error(ec2):
    vpc_id = groups.default_vpc_id(ec2, REGION)
    for subnet in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    ec2.delete_vpc(VpcId=vpc_id)
    with pytest.raises(LabError, match=f"no default VPC in {REGION}: create one with"):
        _ensure(ec2)


def _stubbed_delete(ec2, errors: int):
    stubber = Stubber(ec2)
    for _ in range(errors):
        stubber.add_client_error(
            "delete_security_group", "DependencyViolation", "resource has a dependent object"
        )
    return stubber


def test_delete_retries_with_backoff_while_dependency_violation(ec2):
    sleeps: list[float] = []
    stubber = _stubbed_delete(ec2, errors=3)
    stubber.add_response("delete_security_group", {}, {"GroupId": "sg-12345678"})
    with stubber:
        result = groups.delete_group(
            ec2, {"GroupId": "sg-12345678", "GroupName": "labctl-netlab"}, sleep=sleeps.append
        )
    assert result.status == DELETED
    assert len(sleeps) == 3
    assert sleeps == sorted(sleeps) and sleeps[0] < sleeps[-1]
    stubber.assert_no_pending_responses()


def test_delete_gives_up_with_a_clear_error_after_the_last_attempt(ec2):
    stubber = _stubbed_delete(ec2, errors=4)
    with stubber, pytest.raises(LabError, match="still in use .* run `fab teardown` again"):
        groups.delete_group(ec2, {"GroupId": "sg-12345678"}, attempts=4, sleep=lambda _: None)
    stubber.assert_no_pending_responses()
