"""Instance types before a launch: does it exist, is it offered here, may AWS's Free plan run it.

Accounts created after 15 July 2025 are on AWS's Free plan, where RunInstances refuses every type that is
not free-plan eligible (t2.micro among them); t3.micro is eligible on both plans. EC2 cannot say which
plan an account is on, so a non-eligible type is only a warning (a paid account may run it), while a type
that does not exist or is not offered here is refused before anything is created.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .errors import CloudError, error_code

FREE_PLAN_DEFAULT = "t3.micro"
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,15}\.[a-z0-9-]{1,20}$")  # t3.micro, u-6tb1.metal, c7i-flex.large


def validate_type_name(instance_type: str) -> str:
    """`instance_type` if it is shaped like an EC2 type (family.size), else a CloudError; no API call."""
    if not _TYPE_NAME.match(instance_type or ""):
        raise CloudError(
            f"invalid --instance-type {instance_type!r}: an EC2 type looks like family.size, "
            f"e.g. --instance-type {FREE_PLAN_DEFAULT}"
        )
    return instance_type


class TypeInfo(NamedTuple):
    """What the launch needs to know about one instance type."""

    name: str
    vcpus: int
    free_plan_eligible: bool | None  # None: EC2 (or the emulator) did not say


def describe_type(ec2, instance_type: str) -> TypeInfo:
    """The type's vCPUs and free-plan eligibility; CloudError when EC2 does not know the type."""
    from botocore.exceptions import ClientError

    try:
        found = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
    except ClientError as exc:
        if error_code(exc) not in ("InvalidInstanceType", "InvalidParameterValue"):
            raise
        found = []
    if not found:
        raise CloudError(
            f"unknown instance type {instance_type!r}: use e.g. --instance-type {FREE_PLAN_DEFAULT}"
        )
    info = found[0]
    eligible = info.get("FreeTierEligible")
    return TypeInfo(instance_type, int(info["VCpuInfo"]["DefaultVCpus"]), eligible)


def offered_zones(ec2, instance_type: str) -> list[str]:
    """The availability zones of the client's region that offer `instance_type`."""
    paginator = ec2.get_paginator("describe_instance_type_offerings")
    pages = paginator.paginate(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": [instance_type]}]
    )
    return sorted({o["Location"] for page in pages for o in page["InstanceTypeOfferings"]})


def _runs_amd64(instance_type: dict) -> bool:
    """The lab's Ubuntu image is amd64: an arm64-only type (t4g) cannot boot it."""
    architectures = (instance_type.get("ProcessorInfo") or {}).get("SupportedArchitectures")
    return not architectures or "x86_64" in architectures


def free_plan_types(ec2) -> list[str]:
    """The free-plan eligible amd64 types EC2 lists here ([] when it cannot say)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        paginator = ec2.get_paginator("describe_instance_types")
        pages = paginator.paginate(Filters=[{"Name": "free-tier-eligible", "Values": ["true"]}])
        return sorted({t["InstanceType"] for page in pages for t in page["InstanceTypes"] if _runs_amd64(t)})
    except (ClientError, BotoCoreError, NotImplementedError):
        return []


def check_type(ec2, region: str, instance_type: str) -> tuple[TypeInfo, list[str], list[str]]:
    """Refuse an unknown or unoffered type; returns its info, the zones offering it and warnings."""
    info = describe_type(ec2, instance_type)
    zones = offered_zones(ec2, instance_type)
    if not zones:
        raise CloudError(
            f"instance type {instance_type} is not offered in {region}: "
            f"use e.g. --instance-type {FREE_PLAN_DEFAULT}, or another --region"
        )
    warnings = []
    if info.free_plan_eligible is False:
        eligible = free_plan_types(ec2) or [FREE_PLAN_DEFAULT]
        warnings.append(
            f"{instance_type} is not free-plan eligible: an account on AWS's Free plan (created after "
            f"15 July 2025) is refused; eligible here: {', '.join(eligible)} (e.g. --instance-type "
            f"{FREE_PLAN_DEFAULT})"
        )
    return info, zones, warnings
