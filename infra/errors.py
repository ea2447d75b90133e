"""The cloud layer's error type, and the one place where botocore exceptions become one-line CloudErrors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

from labcore.errors import LabError


class CloudError(LabError):
    """A cloud API call failed in an expected way (credentials, permissions, limits, a missing resource)."""


THROTTLING_CODES = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}
AUTH_CODES = {"AuthFailure", "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch"}


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ('' for anything else)."""
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "")
    return ""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _client_error(exc: ClientError) -> CloudError:
    code = error_code(exc)
    operation = exc.operation_name
    message = _one_line(exc.response.get("Error", {}).get("Message", ""))
    if code == "UnauthorizedOperation" or code.endswith("AccessDenied") or code == "AccessDeniedException":
        said = f"{message.rstrip('.')}; " if message else ""  # AWS's text names the missing action
        return CloudError(
            f"not allowed to call {operation} ({code}): {said}grant the IAM user/role that permission "
            "(iam/labctl-policy.json has all labctl needs), or use another AWS_PROFILE"
        )
    if code in THROTTLING_CODES:
        return CloudError(
            f"AWS kept throttling {operation} even after retries ({code}): wait a minute and re-run"
        )
    if code in AUTH_CODES:
        return CloudError(
            f"AWS rejected the credentials ({code}): check AWS_PROFILE / `aws configure` and re-run"
        )
    if code == "OptInRequired":
        return CloudError(
            f"the account is not opted in to this region or service ({code}): pick another --region"
        )
    return CloudError(f"{operation} failed: {code}: {message}")


def translate(exc: BaseException) -> CloudError:
    """Turn a botocore exception into a CloudError whose message says what to do."""
    if isinstance(exc, ClientError):
        return _client_error(exc)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return CloudError(
            "no AWS credentials found: set AWS_PROFILE or run `aws configure`, or use --target sandbox"
        )
    if isinstance(exc, ProfileNotFound):
        return CloudError(f"{_one_line(str(exc))}: fix AWS_PROFILE or create it with `aws configure`")
    if isinstance(exc, NoRegionError):
        return CloudError("no region given: pass --region, e.g. --region ap-northeast-2")
    if isinstance(exc, EndpointConnectionError):
        return CloudError(
            f"cannot reach the EC2 API ({_one_line(str(exc))}): check the network or AWS_ENDPOINT_URL"
        )
    return CloudError(f"AWS call failed: {_one_line(str(exc))}")


@contextmanager
def aws_errors() -> Iterator[None]:
    """Run a block and re-raise any botocore error as a one-line CloudError."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc) from None
