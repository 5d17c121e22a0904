"""`inv aws.*`: the IAM policies (iam.py: the operator's; roles.py: the roles AWS services assume; arns.py: what
they are scoped to) and the instance pick (instance.py); what every AWS call shares (calls.py: sessions, clients
with retries and timeouts, one-line errors)."""

from gs_ds_env.aws import calls
from gs_ds_env.aws.calls import (
    LOG_GROUP,
    PROCESSING_LOG_GROUP,
    AwsError,
    account_id,
    client,
    core_session,
    error_code,
    explain,
    session,
    share_loader,
)

__all__ = [
    "BotoCoreError",
    "CALL_ERRORS",
    "ClientError",
    "LOG_GROUP",
    "PROCESSING_LOG_GROUP",
    "QUICK",
    "RETRIES",
    "AwsError",
    "account_id",
    "client",
    "core_session",
    "error_code",
    "explain",
    "session",
    "share_loader",
]


def __getattr__(name: str):
    """RETRIES, QUICK, CALL_ERRORS, ClientError, BotoCoreError: botocore's, loaded on first use (see calls.py)."""
    return getattr(calls, name)
