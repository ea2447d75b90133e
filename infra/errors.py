"""The cloud layer's error type, and the one place where botocore exceptions become one-line CloudErrors."""

from __future__ import annotations

import re
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


DENIED_CODES = {"UnauthorizedOperation", "AccessDeniedException"}
_ENCODED = re.compile(r"\s*Encoded authorization failure message:\s*(\S+)\s*$")
FREE_PLAN_TEXT = "not eligible for Free Tier"
_HINTS = {
    "VcpuLimitExceeded": (
        "the account's running On-Demand vCPU quota in this region is used up ({message}): stop or terminate "
        "other instances, use fewer/smaller instances, or ask for more in Service Quotas (code L-1216C47A)"
    ),
    "InstanceLimitExceeded": (
        "the account's instance limit in this region is reached ({message}): terminate other instances or "
        "ask AWS for a higher limit in Service Quotas"
    ),
    "PendingVerification": (
        "AWS is still verifying this new account for this region (PendingVerification): it usually takes "
        "minutes, at most 4 hours; re-run later (AWS emails when it is done)"
    ),
    "OptInRequired": (
        "the account is not opted in to this region or service, or its sign-up is not complete "
        "(OptInRequired): finish the account's sign-up/payment details or pick another --region"
    ),
    "RequestExpired": (
        "AWS refused the request as expired (RequestExpired): set this machine's clock right (e.g. enable "
        "NTP), or renew expired temporary credentials (`aws sso login`, a new session token), and re-run"
    ),
}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _without_encoded_message(message: str) -> tuple[str, str | None]:
    """AWS's text without the trailing encoded authorization message, and that message (if any)."""
    match = _ENCODED.search(message)
    if match is None:
        return message, None
    return message[: match.start()].rstrip(), match.group(1)


def _save_encoded_message(encoded: str) -> str | None:
    """Write the encoded authorization message to a private temp file; its path, None if it cannot."""
    import hashlib
    import os
    import tempfile

    digest = hashlib.sha256(encoded.encode()).hexdigest()[:12]
    path = os.path.join(tempfile.gettempdir(), f"labctl-denied-{os.getuid()}-{digest}.txt")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(encoded)
    except OSError:
        return None
    return path


def _denied(operation: str, code: str, message: str) -> CloudError:
    """Keep AWS's text (it names the denied action); the encoded message only as a way to decode it."""
    text, encoded = _without_encoded_message(message)
    text = text.rstrip(".")
    line = f"not allowed to call {operation} ({code})"
    if text:
        line += f": {text}"
    line += (
        "; grant that action to the IAM user/role (iam/labctl-policy.json has all labctl needs), "
        "or use another AWS_PROFILE"
    )
    if encoded:
        path = _save_encoded_message(encoded)
        argument = f'"$(cat {path})"' if path else f"{encoded[:16]}... (the whole message)"
        line += f"; the reason in full: `aws sts decode-authorization-message --encoded-message {argument}`"
    return CloudError(line)


def _client_error(exc: ClientError) -> CloudError:
    code = error_code(exc)
    operation = exc.operation_name
    message = _one_line(exc.response.get("Error", {}).get("Message", ""))
    if code in DENIED_CODES or code.endswith("AccessDenied"):
        return _denied(operation, code, message)
    if code in THROTTLING_CODES:
        return CloudError(
            f"AWS kept throttling {operation} even after retries ({code}): wait a minute and re-run"
        )
    if code in AUTH_CODES:
        return CloudError(
            f"AWS rejected the credentials ({code}): check AWS_PROFILE / `aws configure` and re-run"
        )
    if code in _HINTS:
        first_sentence = message.split(". ")[0].rstrip(".")
        return CloudError(_HINTS[code].format(message=first_sentence))
    if code == "InvalidParameterCombination" and FREE_PLAN_TEXT in message:
        return CloudError(
            "this account is on AWS's Free plan and the instance type is not eligible for it "
            f"({operation}: {code}): re-run with --instance-type t3.micro (the key pair and security "
            "group already made are reused)"
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
