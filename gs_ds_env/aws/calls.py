"""What every AWS call shares: boto3 sessions and clients with botocore's standard retries and timeouts; one-line
explanations of AWS errors; the caller's account.

AWS_ENDPOINT_URL (private endpoints, moto in the tests) is honoured by botocore itself.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

from gs_ds_env.errors import GsError
from gs_ds_env.settings import ConfigError, Settings

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config

LOG_GROUP = "/aws/sagemaker/TrainingJobs"  # where SageMaker writes every training job's log streams
PROCESSING_LOG_GROUP = "/aws/sagemaker/ProcessingJobs"  # and every processing job's

# A dead or frozen endpoint fails within about a minute (3 attempts x (5 s connect + 20 s read) + backoff), with
# one line naming it, instead of botocore's default 60 s read timeout per attempt.
CONNECT_TIMEOUT, READ_TIMEOUT = 5, 20

# botocore (~0.13 s to import) is loaded by the first AWS call, not by the modules that may make one: a dry-run plan
# or `inv --help` never pays for it. RETRIES, QUICK, CALL_ERRORS, ClientError and BotoCoreError are attributes
# of this module (and of gs_ds_env.aws) made on first use.
_LAZY = ("RETRIES", "QUICK", "CALL_ERRORS", "ClientError", "BotoCoreError")


@functools.cache
def _botocore() -> dict:
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    retries = Config(
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        user_agent_extra="gs-ds-env",
    )
    return {
        "RETRIES": retries,
        # Optional reads (quotas, prices) have a fallback: fail over to it quickly instead of backing off for seconds.
        "QUICK": retries.merge(Config(retries={"mode": "standard", "total_max_attempts": 2})),
        # What a botocore call can raise besides the caller's own bugs (a server answering garbage gives the last).
        "CALL_ERRORS": (ClientError, BotoCoreError, ResponseParserError),
        "ClientError": ClientError,
        "BotoCoreError": BotoCoreError,
    }


def __getattr__(name: str):
    if name in _LAZY:
        return _botocore()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class AwsError(GsError):
    """An AWS call failed; the message says which call, why, and what to do."""


# botocore's data loader (service models, endpoints), one for this process: every session made here reads the
# SageMaker model (~3 MB of JSON, ~0.1 s a parse) once instead of once per session. botocore gives each session
# its own loader and cache; the SDK alone makes three sessions for one local job.
_shared_loader = None
_loader_lock = threading.Lock()


def core_session():
    """A botocore session like botocore's own default, reading botocore's data through this process's one loader."""
    import botocore.session

    global _shared_loader
    core = botocore.session.Session()
    with _loader_lock:
        if _shared_loader is None:
            _shared_loader = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _shared_loader)
    return core


def share_loader(boto_session) -> None:
    """Adopt the loader of a session made elsewhere (the SDK makes one at import) when none is shared yet, and
    give boto3's default session, when nothing has made it yet, the shared loader: the SDK's Estimator creates a
    client from it."""
    import boto3

    global _shared_loader
    loader = getattr(getattr(boto_session, "_session", None), "get_component", lambda _name: None)("data_loader")
    with _loader_lock:
        if _shared_loader is None and loader is not None:
            _shared_loader = loader
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session(botocore_session=core_session())


def session(settings: Settings) -> boto3.Session:
    import boto3

    core = core_session()
    if settings.aws_profile and settings.aws_profile not in core.available_profiles:
        raise ConfigError(
            f"AWS_PROFILE={settings.aws_profile!r} is not in ~/.aws/config: run "
            f"`aws configure --profile {settings.aws_profile}` or leave AWS_PROFILE empty"
        )
    return boto3.Session(
        botocore_session=core, region_name=settings.aws_region, profile_name=settings.aws_profile or None
    )


def client(boto_session: boto3.Session, service: str, region: str | None = None, config: Config | None = None):
    retries = _botocore()["RETRIES"]
    return boto_session.client(service, config=config or retries, region_name=region or boto_session.region_name)


def error_code(error: Exception) -> str:
    if isinstance(error, _botocore()["ClientError"]):
        return error.response.get("Error", {}).get("Code", "")
    return type(error).__name__


def explain(error: Exception, doing: str) -> AwsError:
    """One line for a failed call: what we were doing, AWS's code and message, and a hint for the usual causes."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    if isinstance(error, NoCredentialsError):
        return AwsError(
            f"{doing}: no AWS credentials found; run `aws configure` (or set AWS_PROFILE in .env), "
            "or on a SageMaker notebook attach an execution role"
        )
    if isinstance(error, ClientError):
        code = error_code(error)
        message = error.response.get("Error", {}).get("Message", "")
        hint = {
            "AccessDenied": "the caller lacks this permission: attach the policy from `inv iam-policy`",
            "AccessDeniedException": "the caller lacks this permission: attach the policy from `inv iam-policy`",
            "ExpiredToken": "the credentials expired: refresh them (aws sso login / new session)",
            "InvalidClientTokenId": "the access key is not valid in this account/region: check AWS_PROFILE",
            "ResourceLimitExceeded": "the account quota for this instance type is too low: run `inv instance` and "
            "request an increase in Service Quotas, or use INSTANCE_TYPE=auto",
        }.get(code, "")
        return AwsError(f"{doing}: {code}: {message}" + (f" ({hint})" if hint else ""))
    if isinstance(error, (ConnectTimeoutError, ReadTimeoutError, EndpointConnectionError)):
        return AwsError(f"{doing}: {error} (no answer: check the network, the region and AWS_ENDPOINT_URL)")
    return AwsError(f"{doing}: {type(error).__name__}: {error}")


def account_id(boto_session: boto3.Session) -> str:
    try:
        return client(boto_session, "sts").get_caller_identity()["Account"]
    except _botocore()["CALL_ERRORS"] as error:
        raise explain(error, "reading the account id (sts:GetCallerIdentity)") from None
