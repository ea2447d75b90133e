"""Hardening tests reuse other areas' fixtures: moto with Canonical images and fake credentials (infra), the
echo programs built once per session and servers stopped by PID (echo)."""

from __future__ import annotations

from tests.echo.conftest import echo_build, start_server  # noqa: F401 - fixtures
from tests.infra.conftest import REGION, TEST_CIDR, aws, ec2, isolated_aws  # noqa: F401 - fixtures
