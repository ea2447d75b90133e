"""The one place where botocore exceptions become one-line LabErrors."""

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

from labctl.errors import LabError

THROTTLING_CODES = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}
AUTH_CODES = {"AuthFailure", "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch"}


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ('' for anything else)."""
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "")
    return ""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _client_error(exc: ClientError) -> LabError:
    code = error_code(exc)
    operation = exc.operation_name
    message = _one_line(exc.response.get("Error", {}).get("Message", ""))
    if code == "UnauthorizedOperation" or code.endswith("AccessDenied") or code == "AccessDeniedException":
        return LabError(
            f"not allowed to call {operation} ({code}): grant the IAM user/role EC2 permissions for it, "
            "or use another AWS_PROFILE"
        )
    if code in THROTTLING_CODES:
        return LabError(
            f"AWS kept throttling {operation} even after retries ({code}): wait a minute and re-run"
        )
    if code in AUTH_CODES:
        return LabError(
            f"AWS rejected the credentials ({code}): check AWS_PROFILE / `aws configure` and re-run"
        )
    if code == "OptInRequired":
        return LabError(
            f"the account is not opted in to this region or service ({code}): pick another --region"
        )
    return LabError(f"{operation} failed: {code}: {message}")


def translate(exc: BaseException) -> LabError:
    """Turn a botocore exception into a LabError whose message says what to do."""
    if isinstance(exc, ClientError):
        return _client_error(exc)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return LabError(
            "no AWS credentials found: set AWS_PROFILE or run `aws configure`, or use --target sandbox"
        )
    if isinstance(exc, ProfileNotFound):
        return LabError(f"{_one_line(str(exc))}: fix AWS_PROFILE or create it with `aws configure`")
    if isinstance(exc, NoRegionError):
        return LabError("no region given: pass --region, e.g. --region ap-northeast-2")
    if isinstance(exc, EndpointConnectionError):
        return LabError(
            f"cannot reach the EC2 API ({_one_line(str(exc))}): check the network or AWS_ENDPOINT_URL"
        )
    return LabError(f"AWS call failed: {_one_line(str(exc))}")


@contextmanager
def aws_errors() -> Iterator[None]:
    """Run a block and re-raise any botocore error as a one-line LabError."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc) from None
