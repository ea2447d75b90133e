"""Issue 12 ("Nothing lost"): the fixtures of tests/infra (moto, fake credentials, private state dir)."""

from tests.infra.conftest import aws, ec2, isolated_aws  # noqa: F401 (fixtures)
