"""After an SSH timeout on AWS: is the operator's public IP still one the instance's security group allows?

A laptop that moved (home to campus) gets a new public IP; the group still allows the old one, and SSH
times out with no other sign. Only for real AWS: the IP lookup (`infra.operator_ip`) never runs for an
emulator or the sandbox.
"""

from __future__ import annotations

import ipaddress

from . import operator_ip
from .errors import CloudError
from .security_group import group_rules


def allowed_sources(ec2, instance_id: str, port: int) -> tuple[list[str], list[str]]:
    """The instance's security groups and the IPv4 CIDRs their rules allow to reach TCP `port`."""
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    group_ids = [
        g["GroupId"] for r in reservations for i in r["Instances"] for g in i.get("SecurityGroups", [])
    ]
    if not group_ids:
        return [], []
    groups = ec2.describe_security_groups(GroupIds=group_ids)["SecurityGroups"]
    sources = {
        rule.source
        for group in groups
        for rule in group_rules(group)
        if rule.protocol in ("tcp", "-1")
        and (rule.from_port == -1 or rule.from_port <= port <= rule.to_port)
        and "/" in rule.source
        and ":" not in rule.source
    }
    return group_ids, sorted(sources)


def ssh_source_hint(ec2, instance_id: str, port: int = 22) -> str:
    """'; your public IP is now ... : `fab provision` updates the rule' when the IP left the rule, else ''.

    Appended to the SSH timeout line; any failure of the check itself gives '' (the timeout line stands).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        group_ids, sources = allowed_sources(ec2, instance_id, port)
        if not sources:
            return ""
        address = ipaddress.IPv4Address(operator_ip.operator_public_ip())
    except (CloudError, ClientError, BotoCoreError, ValueError):
        return ""
    if any(address in ipaddress.ip_network(source, strict=False) for source in sources):
        return ""
    return (
        f"; your public IP is now {address} but security group {', '.join(group_ids)} allows port {port} "
        f"only from {', '.join(sources)} (did you change networks?): `fab provision` updates the rule"
    )
