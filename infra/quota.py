"""The running On-Demand Standard vCPU quota, checked before a class creates anything.

New accounts may have a quota of 1 to 32 vCPUs for the standard families (A, C, D, H, I, M, R, T, Z),
shared by every running or pending instance of those families in the region. A class of N labs needs N
times the type's vCPUs on top of what already runs (the class's own instances are counted as part of
the N, not twice).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .errors import CloudError, error_code
from .instance_types import describe_type

SERVICE_CODE = "ec2"
QUOTA_CODE = "L-1216C47A"  # Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances, in vCPUs
STANDARD_FAMILIES = frozenset("acdhimrtz")
_FAMILY = re.compile(r"^([a-z]+)\d")


def is_standard(instance_type: str) -> bool:
    """True for types the standard quota covers (t3.micro yes; g4dn, inf1, p3, x2 no)."""
    match = _FAMILY.match(instance_type)
    return bool(match) and match.group(1) in STANDARD_FAMILIES


def vcpu_quota(quotas) -> tuple[float | None, str | None]:
    """The quota's value, or (None, why it could not be read)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if quotas is None:
        return None, "this target has no Service Quotas API"
    try:
        value = quotas.get_service_quota(ServiceCode=SERVICE_CODE, QuotaCode=QUOTA_CODE)["Quota"]["Value"]
    except ClientError as exc:
        return None, f"{error_code(exc) or 'error'} from servicequotas:GetServiceQuota"
    except (BotoCoreError, NotImplementedError) as exc:
        return None, type(exc).__name__
    return float(value), None


def _vcpus(instance: dict, type_vcpus: Callable[[str], int]) -> int:
    options = instance.get("CpuOptions") or {}
    if options.get("CoreCount") and options.get("ThreadsPerCore"):
        return int(options["CoreCount"]) * int(options["ThreadsPerCore"])
    return type_vcpus(instance["InstanceType"])


def running_standard_vcpus(ec2, ignore: Callable[[dict], bool]) -> int:
    """vCPUs of the region's running and pending standard-family instances, except those `ignore` picks."""
    known: dict[str, int] = {}

    def type_vcpus(instance_type: str) -> int:
        if instance_type not in known:
            info = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"][0]
            known[instance_type] = int(info["VCpuInfo"]["DefaultVCpus"])
        return known[instance_type]

    paginator = ec2.get_paginator("describe_instances")
    pages = paginator.paginate(Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
    return sum(
        _vcpus(instance, type_vcpus)
        for page in pages
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
        if is_standard(instance["InstanceType"]) and not ignore(instance)
    )


def check_vcpu_room(
    ec2, quotas, region: str, instance_type: str, count: int, ignore: Callable[[dict], bool]
) -> str | None:
    """Refuse (CloudError) when `count` instances of the type do not fit the quota; a warning if unknown.

    `ignore`: instances that belong to the run itself (they are part of `count`).
    """
    if not is_standard(instance_type):
        return None
    quota, why = vcpu_quota(quotas)
    if quota is None:
        return f"could not read the running On-Demand vCPU quota ({why}): continuing without the check"
    in_use = running_standard_vcpus(ec2, ignore)
    vcpus_each = describe_type(ec2, instance_type).vcpus
    needed = count * vcpus_each
    if in_use + needed <= quota:
        return None
    fit = max(0, int((quota - in_use) // vcpus_each))
    raise CloudError(
        f"{count} x {instance_type} need {needed} vCPUs but the account's running On-Demand standard vCPU "
        f"quota in {region} is {quota:g} with {in_use} in use: only {fit} fit; ask for more in Service "
        f"Quotas (ec2 {QUOTA_CODE}), stop other instances, or run fewer students"
    )
