"""Hardening tests reuse the cloud layer's fixtures: moto with Canonical images, fake credentials."""

from __future__ import annotations

from tests.infra.conftest import REGION, TEST_CIDR, aws, ec2, isolated_aws  # noqa: F401 - fixtures
