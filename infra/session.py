"""boto3 sessions and clients with standard retries; the endpoint comes from boto3's own chain."""

from __future__ import annotations

import boto3
from botocore.config import Config

from labctl.errors import LabError

RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})
SANDBOX_CREDENTIALS = {"aws_access_key_id": "sandbox", "aws_secret_access_key": "sandbox"}


def aws_session(region: str, sandbox: bool = False) -> boto3.session.Session:
    """A session for `region`: the default credential chain, or dummy credentials for the sandbox.

    The sandbox session ignores AWS_PROFILE: it never needs the operator's AWS configuration.
    """
    from botocore.exceptions import ProfileNotFound

    try:
        if sandbox:
            return boto3.session.Session(
                region_name=region, botocore_session=_profile_free_session(), **SANDBOX_CREDENTIALS
            )
        return boto3.session.Session(region_name=region)
    except ProfileNotFound as exc:
        raise LabError(f"{exc}: fix AWS_PROFILE or create the profile with `aws configure`") from None


def _profile_free_session():
    """A botocore session that ignores AWS_PROFILE (a missing profile must not break the sandbox)."""
    import botocore.session
    from botocore.configprovider import ConstantProvider

    isolated = botocore.session.Session()
    isolated.get_component("config_store").set_config_provider("profile", ConstantProvider(None))
    return isolated


def has_credentials(session: boto3.session.Session | None = None) -> bool:
    """True when boto3's default chain finds credentials (no network call)."""
    from botocore.exceptions import BotoCoreError

    try:
        return (session or boto3.session.Session()).get_credentials() is not None
    except BotoCoreError:
        return False


def client(session: boto3.session.Session, service: str, endpoint_url: str | None = None):
    """A client for `service` with standard retries; `endpoint_url` overrides boto3's own endpoint."""
    return session.client(service, endpoint_url=endpoint_url, config=RETRY_CONFIG)
