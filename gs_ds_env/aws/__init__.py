"""`inv aws.*`: the operator's IAM policy (iam.py) and the instance pick (instance.py); what every AWS call shares
(calls.py: sessions, clients with retries and timeouts, one-line errors)."""

from gs_ds_env.aws.calls import (
    CALL_ERRORS,
    LOG_GROUP,
    PROCESSING_LOG_GROUP,
    QUICK,
    RETRIES,
    AwsError,
    account_id,
    client,
    error_code,
    explain,
    session,
)

__all__ = [
    "CALL_ERRORS",
    "LOG_GROUP",
    "PROCESSING_LOG_GROUP",
    "QUICK",
    "RETRIES",
    "AwsError",
    "account_id",
    "client",
    "error_code",
    "explain",
    "session",
]
