"""Fixtures for issue 7's tests: moto (with the Canonical image catalogue) from tests/infra, and the
module-scoped sandbox hosts of tests/lab (chroot and booted) for the host-side auto-stop."""

from __future__ import annotations

from tests.infra.conftest import REGION, TEST_CIDR, aws, ec2, isolated_aws  # noqa: F401
from tests.lab.conftest import booted_host, sandbox_host  # noqa: F401
