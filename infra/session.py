"""EC2/SSM clients with standard retries, built on botocore (boto3's core); the endpoint comes from its chain.

boto3 stays the documented dependency, but labctl only needs clients, and building them from a botocore
session directly skips importing boto3 (and s3transfer). Every session of the process shares one data
loader, so the EC2 model and the endpoint data are parsed once per process, however many sessions and
clients the tasks of one `fab` run make.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

from labctl.errors import LabError

if TYPE_CHECKING:
    import botocore.session

SANDBOX_CREDENTIALS = ("sandbox", "sandbox")


@functools.lru_cache(maxsize=1)
def retry_config():
    """botocore's standard retry mode with 5 attempts (instead of hand-written retry loops)."""
    from botocore.config import Config

    return Config(retries={"mode": "standard", "max_attempts": 5})


@functools.lru_cache(maxsize=1)
def data_loader():
    """The process-wide botocore data loader: each new one would parse the EC2 model again (~0.1-0.4 s)."""
    import botocore.loaders

    return botocore.loaders.create_loader(os.environ.get("AWS_DATA_PATH"))


def aws_session(region: str, sandbox: bool = False) -> botocore.session.Session:
    """A session for `region`: the default credential chain, or dummy credentials for the sandbox.

    The sandbox session ignores AWS_PROFILE: it never needs the operator's AWS configuration.
    """
    import botocore.session
    from botocore.exceptions import ProfileNotFound

    session = botocore.session.Session()
    session.register_component("data_loader", data_loader())
    try:
        if sandbox:
            _ignore_profile(session)
            session.set_credentials(*SANDBOX_CREDENTIALS)
        session.get_scoped_config()  # a missing AWS_PROFILE fails here, as boto3.Session() would
    except ProfileNotFound as exc:
        raise LabError(f"{exc}: fix AWS_PROFILE or create the profile with `aws configure`") from None
    session.set_config_variable("region", region)
    return session


def _ignore_profile(session: botocore.session.Session) -> None:
    """Make `session` ignore AWS_PROFILE (a missing profile must not break the sandbox)."""
    from botocore.configprovider import ConstantProvider

    session.get_component("config_store").set_config_provider("profile", ConstantProvider(None))


def has_credentials(session: botocore.session.Session | None = None) -> bool:
    """True when botocore's default chain finds credentials (no network call)."""
    from botocore.exceptions import BotoCoreError

    try:
        if session is None:
            import botocore.session

            session = botocore.session.Session()
        return session.get_credentials() is not None
    except BotoCoreError:
        return False


def client(session: botocore.session.Session, service: str, endpoint_url: str | None = None) -> Any:
    """A client for `service` with standard retries; `endpoint_url` overrides botocore's own endpoint."""
    return session.create_client(
        service,
        region_name=session.get_config_variable("region"),
        endpoint_url=endpoint_url,
        config=retry_config(),
    )
