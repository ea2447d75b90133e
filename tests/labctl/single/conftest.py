"""Single-lab tests run on the cloud layer's moto fixtures (fake credentials, own state dir)."""

from __future__ import annotations

from tests.infra.conftest import REGION, TEST_CIDR, aws, ec2, isolated_aws  # noqa: F401
