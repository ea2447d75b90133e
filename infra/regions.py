"""Region names: checked locally against botocore's endpoint data before any call."""

from __future__ import annotations

import re

import boto3

from labctl.errors import LabError

DEFAULT_REGION = "ap-northeast-2"
_REGION_SHAPE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")


def known_regions() -> set[str]:
    """Every EC2 region botocore knows in the public, China and GovCloud partitions."""
    session = boto3.session.Session()
    regions: set[str] = set()
    for partition in ("aws", "aws-cn", "aws-us-gov"):
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return regions


def validate_region(region: str) -> str:
    """Return `region` if it is a known EC2 region, else raise a LabError naming the default."""
    if region in known_regions():
        return region
    hint = "" if _REGION_SHAPE.match(region or "") else " (a region looks like ap-northeast-2)"
    raise LabError(f"unknown region {region!r}{hint}: pass a valid --region, e.g. --region {DEFAULT_REGION}")
