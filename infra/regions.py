"""Region names: checked locally against botocore's endpoint data before any call."""

from __future__ import annotations

import re

from infra.errors import CloudError

DEFAULT_REGION = "ap-northeast-2"
PARTITIONS = ("aws", "aws-cn", "aws-us-gov")
_REGION_SHAPE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")


def known_regions() -> set[str]:
    """Every EC2 region botocore knows in the public, China and GovCloud partitions.

    Read from the endpoint data through the process-wide loader (the EC2 client needs the same data, so
    it is parsed once), without loading the EC2 service model.
    """
    from botocore.regions import EndpointResolver

    from infra.session import data_loader

    resolver = EndpointResolver(data_loader().load_data("endpoints"))
    regions: set[str] = set()
    for partition in PARTITIONS:
        regions.update(resolver.get_available_endpoints("ec2", partition))
    return regions


def validate_region(region: str) -> str:
    """Return `region` if it is a known EC2 region, else raise a CloudError naming the default."""
    if region in known_regions():
        return region
    hint = "" if _REGION_SHAPE.match(region or "") else " (a region looks like ap-northeast-2)"
    raise CloudError(
        f"unknown region {region!r}{hint}: pass a valid --region, e.g. --region {DEFAULT_REGION}"
    )
