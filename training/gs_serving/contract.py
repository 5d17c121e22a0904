"""The serving container's contract in one object, read once from the environment SageMaker (or local mode) sets.

https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 8080
DEFAULT_TIMEOUT_SECONDS = 60
DEFAULT_MAX_PAYLOAD_MB = 6
# SageMaker waits 30 s after SIGTERM; in-flight requests get the rest of that, minus the margin to exit.
GRACEFUL_SECONDS = 25
# A request body must arrive within this (a client that announces a body and sends nothing holds a connection), and
# each worker holds at most this many connections (beyond, a 503 at once): a server under a slow client keeps serving.
DEFAULT_BODY_TIMEOUT_SECONDS = 30
DEFAULT_MAX_CONNECTIONS = 500


# A model made by one of this project's programs says which built-in handler serves it, in this file of its model
# folder: {"handler": "titanic.serve", "program": ...}. A model without it is never served by a built-in handler.
MODEL_MARKER = "gs-ds-env-model.json"


class ContractError(ValueError):
    """A serving variable with a value the container cannot use; the message names the variable."""


def _positive_int(environ: dict[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ContractError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise ContractError(f"{name}={raw!r} must be at least 1")
    return value


@dataclass(frozen=True)
class ServingEnvironment:
    port: int
    workers: int
    timeout_seconds: int
    max_payload_bytes: int
    model_dir: Path
    code_dir: Path
    program: str | None
    default_accept: str | None
    theme: str
    body_timeout_seconds: int = DEFAULT_BODY_TIMEOUT_SECONDS
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> ServingEnvironment:
        env = dict(os.environ if environ is None else environ)
        model_dir = Path(env.get("SM_MODEL_DIR", "/opt/ml/model"))
        submit = env.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
        # The SDK's Model(entry_point=..., source_dir=...) repacks the code into model.tar.gz under code/; in local
        # mode with a local source_dir it mounts it and names the mount in SAGEMAKER_SUBMIT_DIRECTORY.
        code_dir = Path(submit) if submit.startswith("/") else model_dir / "code"
        port = _positive_int(env, "SAGEMAKER_BIND_TO_PORT", DEFAULT_PORT)
        if port > 65535:
            raise ContractError(f"SAGEMAKER_BIND_TO_PORT={port} is not a port (1-65535)")
        return cls(
            port=port,
            workers=_positive_int(env, "SAGEMAKER_MODEL_SERVER_WORKERS", os.cpu_count() or 1),
            timeout_seconds=_positive_int(env, "SAGEMAKER_MODEL_SERVER_TIMEOUT", DEFAULT_TIMEOUT_SECONDS),
            max_payload_bytes=_positive_int(env, "SAGEMAKER_MAX_PAYLOAD_IN_MB", DEFAULT_MAX_PAYLOAD_MB) * 1024 * 1024,
            model_dir=model_dir,
            code_dir=code_dir,
            program=env.get("SAGEMAKER_PROGRAM") or None,
            default_accept=env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or None,
            theme=env.get("GS_THEME", ""),
            body_timeout_seconds=_positive_int(env, "GS_BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT_SECONDS),
            max_connections=_positive_int(env, "GS_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS),
        )
