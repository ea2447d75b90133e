"""Checks before anything is created: the instance type, and a network path SSH can use.

A new account may have no default subnet in a zone, or default subnets that do not give instances a
public IP (then SSH can never reach them). Rather than leave a key pair and a security group behind a
failed or unreachable launch, the lab picks a default subnet that maps public IPs in a zone offering the
type, or refuses in one line naming the fix. (The missing default VPC is `security_group.default_vpc_id`'s.)
"""

from __future__ import annotations

from typing import NamedTuple

from .ami import support_note
from .errors import CloudError
from .instance_types import TypeInfo, check_type


class LaunchPlan(NamedTuple):
    """Where and what to launch: a default subnet with public IPs, the type's info, warnings to print."""

    subnet_id: str
    instance_type: TypeInfo | None  # None: nothing was checked (a re-run)
    warnings: list[str]


def public_subnet(ec2, region: str, vpc_id: str, zones: list[str], instance_type: str) -> str:
    """A default subnet of `vpc_id` in one of `zones` that gives instances a public IP (first zone first)."""
    subnets = ec2.describe_subnets(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "default-for-az", "Values": ["true"]},
        ]
    )["Subnets"]
    if not subnets:
        raise CloudError(
            f"the default VPC {vpc_id} in {region} has no default subnet: create one with "
            f"`aws ec2 create-default-subnet --availability-zone {zones[0]}` and re-run"
        )
    usable = sorted(
        (s for s in subnets if s["AvailabilityZone"] in zones), key=lambda s: s["AvailabilityZone"]
    )
    if not usable:
        raise CloudError(
            f"no default subnet in the zones that offer {instance_type} ({', '.join(zones)}): create one "
            f"with `aws ec2 create-default-subnet --availability-zone {zones[0]}` and re-run"
        )
    public = [s for s in usable if s.get("MapPublicIpOnLaunch")]
    if not public:
        subnet = usable[0]["SubnetId"]
        raise CloudError(
            f"the default subnets in {region} do not give instances a public IP, so SSH could not reach "
            f"the lab: run `aws ec2 modify-subnet-attribute --subnet-id {subnet} --map-public-ip-on-launch` "
            "and re-run"
        )
    return public[0]["SubnetId"]


def check_launch(ec2, region: str, vpc_id: str, instance_type: str) -> LaunchPlan:
    """Everything a launch needs that can fail before anything exists; CloudError (one line) if not."""
    info, zones, warnings = check_type(ec2, region, instance_type)
    return LaunchPlan(public_subnet(ec2, region, vpc_id, zones, instance_type), info, warnings)


def launch_checks(
    ec2, region: str, vpc_id: str, instance_type: str, image: dict, release: str, first_run: bool
) -> LaunchPlan:
    """`check_launch` plus the image's support note, on a lab's first run; nothing to check on a re-run.

    A re-run reuses what exists, and its cloud part stays one describe call per resource.
    """
    if not first_run:
        return LaunchPlan("", None, [])
    plan = check_launch(ec2, region, vpc_id, instance_type)
    note = support_note(image, release)
    return plan._replace(warnings=plan.warnings + ([note] if note else []))
