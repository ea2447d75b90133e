"""EC2/SSM clients with standard retries, built on botocore (boto3's core); the endpoint comes from its chain.

boto3 stays the documented dependency, but labctl only needs clients, and building them from a botocore
session directly skips importing boto3 (and s3transfer). Every session of the process shares one data
loader, so the endpoint data and the service models are parsed once per process, however many sessions
and clients the tasks of one `fab` run make; the EC2 and SSM models are the cut ones of `infra.models`.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra import models
from infra.errors import CloudError

if TYPE_CHECKING:
    import botocore.session

SANDBOX_CREDENTIALS = ("sandbox", "sandbox")


@functools.lru_cache(maxsize=1)
def retry_config():
    """botocore's standard retry mode with 5 attempts (instead of hand-written retry loops)."""
    from botocore.config import Config

    return Config(retries={"mode": "standard", "max_attempts": 5})


def _data_path() -> list[str]:
    """$AWS_DATA_PATH's directories, expanded as botocore's own `create_loader` does."""
    value = os.environ.get("AWS_DATA_PATH")
    return [os.path.expanduser(os.path.expandvars(p)) for p in value.split(os.pathsep)] if value else []


@functools.lru_cache(maxsize=1)
def botocore_loader():
    """A loader of botocore's own models (and $AWS_DATA_PATH, ~/.aws/models), as botocore would make."""
    import botocore.loaders

    return botocore.loaders.Loader(extra_search_paths=_data_path())


@functools.lru_cache(maxsize=1)
def data_loader():
    """The process-wide loader of labctl's clients: the cut models first, then what botocore would load.

    One loader per process: each new one would parse the models and the endpoint data again.
    """
    import botocore.loaders

    trimmed = models.trimmed_models_dir(botocore_loader())
    if trimmed is None:
        return botocore_loader()
    return botocore.loaders.Loader(extra_search_paths=[str(trimmed), *_data_path()])


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
        raise CloudError(f"{exc}: fix AWS_PROFILE or create the profile with `aws configure`") from None
    session.set_config_variable("region", region)
    return session


def _ignore_profile(session: botocore.session.Session) -> None:
    """Make `session` ignore AWS_PROFILE (a missing profile must not break the sandbox)."""
    from botocore.configprovider import ConstantProvider

    session.get_component("config_store").set_config_provider("profile", ConstantProvider(None))


def has_credentials(session: botocore.session.Session | None = None) -> bool:
    """True when botocore's default chain finds credentials (the chain may ask the instance metadata service).

    Only for a target already chosen as aws; guessing the target uses `has_local_credentials`.
    """
    from botocore.exceptions import BotoCoreError

    try:
        if session is None:
            import botocore.session

            session = botocore.session.Session()
        return session.get_credentials() is not None
    except BotoCoreError:
        return False


CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE")
CREDENTIAL_KEYS = (
    "aws_access_key_id",
    "credential_process",
    "role_arn",
    "web_identity_token_file",
    "sso_session",
    "sso_start_url",
    "login_session",
)


def _aws_file(variable: str, default: str) -> Path:
    return Path(os.environ.get(variable) or default).expanduser()


def _profile_sections(path: Path, profile: str, config_file: bool) -> list[dict[str, str]]:
    """The `profile`'s settings in one INI file (config: `[profile x]`, credentials: `[x]`); [] if none."""
    import configparser

    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return []
    names = [profile] if not config_file or profile == "default" else []
    names += [f"profile {profile}"] if config_file else []
    return [dict(parser.items(name)) for name in names if parser.has_section(name)]


def has_local_credentials() -> bool:
    """True when credentials for labctl are configured on this machine, looking at local sources only.

    Environment variables, the config and credentials files and the SSO token cache: never the instance
    metadata service or a container endpoint (a 1 s stall on a laptop, and on a machine with an instance
    role a silent switch to real AWS). An instance role is used with an explicit `--target aws`.
    """
    if any(os.environ.get(name) for name in CREDENTIAL_ENV):
        return True
    profile = "default"
    settings: dict[str, str] = {}
    for section in _profile_sections(
        _aws_file("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), profile, False
    ):
        settings.update(section)
    for section in _profile_sections(_aws_file("AWS_CONFIG_FILE", "~/.aws/config"), profile, True):
        settings.update(section)
    if any(settings.get(key) for key in CREDENTIAL_KEYS):
        return True
    sso_cache = Path("~/.aws/sso/cache").expanduser()
    return bool(settings.get("sso_account_id")) and any(sso_cache.glob("*.json"))


ENDPOINT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2")


def refuse_ignored_endpoint(resolved: str | None) -> None:
    """CloudError when AWS_ENDPOINT_URL(_EC2) names an emulator but the EC2 client would go to AWS.

    botocore honours those variables from 1.31.0 on (and not with AWS_IGNORE_CONFIGURED_ENDPOINT_URLS):
    an older or configured-away botocore would silently send the lab to real AWS.
    """
    from labcore.net import is_aws_endpoint

    wanted = [(name, os.environ[name]) for name in ENDPOINT_ENV if os.environ.get(name)]
    if not wanted or not is_aws_endpoint(resolved):
        return
    name, value = wanted[-1]
    if is_aws_endpoint(value):
        return  # it names AWS itself
    import botocore

    raise CloudError(
        f"{name}={value} is set but botocore {botocore.__version__} sends EC2 calls to {resolved}: "
        "refusing to reach real AWS by surprise; upgrade boto3/botocore (botocore>=1.31), unset "
        f"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS, or unset {name}"
    )


def client(session: botocore.session.Session, service: str, endpoint_url: str | None = None) -> Any:
    """A client for `service` with standard retries; `endpoint_url` overrides botocore's own endpoint."""
    region = session.get_config_variable("region")
    try:
        created = session.create_client(
            service, region_name=region, endpoint_url=endpoint_url, config=retry_config()
        )
    except ValueError:  # a damaged cut model (JSONDecodeError): the whole model now, a new cut next run
        if service not in models.OPERATIONS:
            raise
        models.discard_damaged(service)
        return _whole_model_client(session, service, region, endpoint_url)
    if service in models.OPERATIONS:
        whole = _lazy(lambda: _whole_model_client(session, service, region, endpoint_url))
        answer = functools.partial(models.untrimmed_operation, whole)
        created.meta.events.register(f"getattr.{service}", answer)
        created.get_paginator = functools.partial(models.paginator, whole, created)
        created.can_paginate = functools.partial(models.can_paginate, whole, created)
    return created


def _whole_model_client(
    session: botocore.session.Session, service: str, region: str, endpoint_url: str | None
):
    """A client on botocore's whole model with `session`'s credentials, for operations the cut one lacks."""
    import botocore.session

    credentials = session.get_credentials().get_frozen_credentials()
    whole = botocore.session.Session()
    whole.register_component("data_loader", botocore_loader())
    _ignore_profile(whole)  # everything it needs is given below
    return whole.create_client(
        service,
        region_name=region,
        endpoint_url=endpoint_url,
        config=retry_config(),
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
    )


def _lazy(build):
    """`build()` on the first call only (thread-safe), the same object afterwards."""
    lock, made = threading.Lock(), []

    def get():
        with lock:
            if not made:
                made.append(build())
            return made[0]

    return get
