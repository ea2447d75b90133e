"""The lab's security group: exactly SSH, all ICMP (IPv4) and the echo port, from one source CIDR.

Rules are compared in a normalized form (protocol name, port range, source) so ICMP's -1 ports and
protocol numbers never show up as drift.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from infra.errors import CloudError

from .errors import error_code
from .results import ABSENT, CHANGED, CREATED, DELETED, FOREIGN, OK, Result
from .tags import is_ours, lab_filters, resource_name, tag_specifications

ECHO_PORT = 12345
_PROTOCOL_NAMES = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6", "all": "-1"}
_DESCRIPTIONS = {("tcp", 22): "SSH", ("icmp", -1): "ICMP (ping)", ("tcp", ECHO_PORT): "echo server"}


class Rule(NamedTuple):
    """One ingress rule in normalized form. `source` is a CIDR, `sg:<id>` or `pl:<id>`."""

    protocol: str
    from_port: int
    to_port: int
    source: str

    def describe(self) -> str:
        ports = (
            "all"
            if self.from_port == -1
            else (
                str(self.from_port) if self.from_port == self.to_port else f"{self.from_port}-{self.to_port}"
            )
        )
        return f"{self.protocol} {ports} from {self.source}"


def desired_rules(cidr: str) -> set[Rule]:
    """The lab's ingress: TCP 22, all ICMP (IPv4), TCP 12345, all from `cidr`."""
    return {Rule("tcp", 22, 22, cidr), Rule("icmp", -1, -1, cidr), Rule("tcp", ECHO_PORT, ECHO_PORT, cidr)}


def _normalized_ports(protocol: str, permission: dict) -> tuple[int, int]:
    if protocol in ("-1", "icmp", "icmpv6") and permission.get("FromPort", -1) == -1:
        return -1, -1
    if protocol == "-1":
        return -1, -1
    return int(permission.get("FromPort", -1)), int(permission.get("ToPort", -1))


def normalize(permissions: list[dict]) -> set[Rule]:
    """Flatten EC2 IpPermissions into one Rule per (protocol, ports, source)."""
    rules = set()
    for permission in permissions:
        protocol = str(permission.get("IpProtocol", "-1")).lower()
        protocol = _PROTOCOL_NAMES.get(protocol, protocol)
        from_port, to_port = _normalized_ports(protocol, permission)
        sources = [r["CidrIp"] for r in permission.get("IpRanges", [])]
        sources += [r["CidrIpv6"] for r in permission.get("Ipv6Ranges", [])]
        sources += [f"sg:{p['GroupId']}" for p in permission.get("UserIdGroupPairs", [])]
        sources += [f"pl:{p['PrefixListId']}" for p in permission.get("PrefixListIds", [])]
        rules.update(Rule(protocol, from_port, to_port, source) for source in sources)
    return rules


def to_permission(rule: Rule, describe: bool = True) -> dict:
    """The IpPermissions entry that adds (with a description) or revokes exactly `rule`."""
    permission: dict = {"IpProtocol": rule.protocol}
    if rule.protocol != "-1":
        permission.update(FromPort=rule.from_port, ToPort=rule.to_port)
    description = _DESCRIPTIONS.get((rule.protocol, rule.from_port)) if describe else None
    kind, _, value = rule.source.partition(":")
    if kind == "sg":
        permission["UserIdGroupPairs"] = [{"GroupId": value}]
    elif kind == "pl":
        permission["PrefixListIds"] = [{"PrefixListId": value}]
    elif ":" in rule.source:
        permission["Ipv6Ranges"] = [{"CidrIpv6": rule.source}]
    else:
        permission["IpRanges"] = [
            {"CidrIp": rule.source, **({"Description": description} if description else {})}
        ]
    return permission


def default_vpc_id(ec2, region: str) -> str:
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise CloudError(
            f"no default VPC in {region}: create one with "
            f"`aws ec2 create-default-vpc --region {region}` and re-run"
        )
    return vpcs[0]["VpcId"]


def find_groups(ec2, lab: str) -> list[dict]:
    """Our security groups for `lab` (any VPC), found by tags."""
    paginator = ec2.get_paginator("describe_security_groups")
    return [g for page in paginator.paginate(Filters=lab_filters(lab)) for g in page["SecurityGroups"]]


def find_lookalikes(ec2, lab: str) -> list[dict]:
    """Groups that carry our group name but not our tags: never touched, only reported."""
    filters = [{"Name": "group-name", "Values": [resource_name(lab)]}]
    groups = ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
    return [group for group in groups if not is_ours(group, lab)]


def _create_group(ec2, lab: str, vpc_id: str, tags: dict[str, str] | None = None) -> str:
    response = ec2.create_security_group(
        GroupName=resource_name(lab),
        Description=f"labctl lab {lab}: SSH, ICMP and the echo server port {ECHO_PORT}",
        VpcId=vpc_id,
        TagSpecifications=tag_specifications("security-group", lab, tags),
    )
    return response["GroupId"]


def _repair_rules(ec2, group_id: str, current: set[Rule], wanted: set[Rule], dry_run: bool) -> list[Result]:
    missing, extra = sorted(wanted - current), sorted(current - wanted)
    if not dry_run and missing:
        ec2.authorize_security_group_ingress(
            GroupId=group_id, IpPermissions=[to_permission(r) for r in missing]
        )
    if not dry_run and extra:
        ec2.revoke_security_group_ingress(
            GroupId=group_id, IpPermissions=[to_permission(r, describe=False) for r in extra]
        )
    added = [Result(CHANGED, f"rule {rule.describe()}", f"added to {group_id}", dry_run) for rule in missing]
    removed = [
        Result(CHANGED, f"rule {rule.describe()}", f"revoked from {group_id}", dry_run) for rule in extra
    ]
    return added + removed


def _existing_group_in_vpc(ec2, lab: str, vpc_id: str) -> dict | None:
    ours = [group for group in find_groups(ec2, lab) if group.get("VpcId") == vpc_id]
    if ours:
        return ours[0]
    clash = [group for group in find_lookalikes(ec2, lab) if group.get("VpcId") == vpc_id]
    if clash:
        raise CloudError(
            f"security group {clash[0]['GroupId']} is named {resource_name(lab)} but has no labctl tags: "
            "it is not ours, so delete or rename it yourself, or pick another --name"
        )
    return None


def ensure_security_group(
    ec2,
    lab: str,
    vpc_id: str,
    cidr: str | list[str],
    dry_run: bool = False,
    tags: dict[str, str] | None = None,
) -> tuple[list[Result], str | None]:
    """Make sure our group exists with exactly the rules of each CIDR; returns results and the group id."""
    wanted = set().union(*(desired_rules(c) for c in ([cidr] if isinstance(cidr, str) else cidr)))
    group = _existing_group_in_vpc(ec2, lab, vpc_id)
    name = resource_name(lab)
    if group is None and dry_run:
        rules = ", ".join(rule.describe() for rule in sorted(wanted))
        return [Result(CREATED, f"security group {name}", f"in {vpc_id}: {rules}", True)], None
    if group is None:
        group_id = _create_group(ec2, lab, vpc_id, tags)
        ec2.authorize_security_group_ingress(
            GroupId=group_id, IpPermissions=[to_permission(r) for r in sorted(wanted)]
        )
        rules = ", ".join(rule.describe() for rule in sorted(wanted))
        return [Result(CREATED, f"security group {name}", f"{group_id} in {vpc_id}: {rules}")], group_id
    group_id = group["GroupId"]
    repairs = _repair_rules(ec2, group_id, normalize(group.get("IpPermissions", [])), wanted, dry_run)
    return repairs or [Result(OK, f"security group {name}", f"{group_id}: rules as wanted")], group_id


def group_rules(group: dict) -> list[Rule]:
    return sorted(normalize(group.get("IpPermissions", [])))


def delete_group(
    ec2, group: dict, attempts: int = 12, delay: float = 5.0, sleep: Callable[[float], None] = time.sleep
) -> Result:
    """Delete one of our groups, retrying with backoff while EC2 still reports DependencyViolation."""
    from botocore.exceptions import ClientError

    group_id = group["GroupId"]
    for attempt in range(attempts):
        try:
            ec2.delete_security_group(GroupId=group_id)
            return Result(DELETED, f"security group {group.get('GroupName', group_id)}", group_id)
        except ClientError as exc:
            code = error_code(exc)
            if code == "InvalidGroup.NotFound":
                return Result(ABSENT, f"security group {group_id}")
            if code != "DependencyViolation":
                raise
            if attempt == attempts - 1:
                raise _still_in_use(group_id) from None
            sleep(min(delay * 2**attempt, 30.0))
    raise _still_in_use(group_id)  # pragma: no cover - the loop returns or raises


def _still_in_use(group_id: str) -> CloudError:
    return CloudError(
        f"security group {group_id} is still in use by another resource (DependencyViolation): "
        "wait a minute and run `fab teardown` again"
    )


def lookalike_results(ec2, lab: str) -> list[Result]:
    return [
        Result(
            FOREIGN, f"security group {group['GroupId']}", f"named {resource_name(lab)} without labctl tags"
        )
        for group in find_lookalikes(ec2, lab)
    ]
