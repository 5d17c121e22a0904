"""One request to an endpoint: a local one (the SDK's LocalSagemakerRuntimeClient, http://127.0.0.1:<port>) or one
on SageMaker (boto3's sagemaker-runtime), through the same invoke_endpoint call."""

from __future__ import annotations

import sys
from pathlib import Path

from gs_ds_env.serve import ServeError
from gs_ds_env.settings import ConfigError, Settings

CONTENT_TYPES = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".jsonl": "application/jsonlines",
    ".jsonlines": "application/jsonlines",
    ".npy": "application/x-npy",
    ".npz": "application/x-npz",
    ".libsvm": "text/libsvm",
}
MAX_REQUEST_BYTES = 6 * 1024 * 1024  # SageMaker's InvokeEndpoint limit (and the local server's default)


def content_type_of(path: Path) -> str:
    kind = CONTENT_TYPES.get(path.suffix.lower())
    if not kind:
        raise ConfigError(f"--input {path}: name a {', '.join(CONTENT_TYPES)} file (the suffix says its content type)")
    return kind


def read_input(path: Path) -> bytes:
    if not path.is_file():
        raise ConfigError(f"--input {path} is not a file")
    body = path.read_bytes()
    if len(body) > MAX_REQUEST_BYTES:
        raise ConfigError(
            f"--input {path} has {len(body) / 1e6:.1f} MB, above an endpoint's 6 MB per request: split it "
            "(or run a batch transform over it)"
        )
    return body


def _first_line(data: bytes) -> str:
    return " ".join(data.decode(errors="replace").split())[:300] or "(no body)"


def invoke_local(body: bytes, content_type: str, accept: str, port: int) -> bytes:
    from urllib3.exceptions import HTTPError

    from gs_ds_env.sdk import sagemaker

    sagemaker()  # quiet: the predictions alone go to stdout
    from sagemaker.local.local_session import LocalSagemakerRuntimeClient

    client = LocalSagemakerRuntimeClient(config={"local": {"serving_port": port}})
    try:
        response = client.invoke_endpoint(Body=body, EndpointName="local", ContentType=content_type, Accept=accept)
    except HTTPError:
        raise ServeError(
            f"nothing answers on http://127.0.0.1:{port}: start the endpoint with `inv serve` (another terminal)"
        ) from None
    answer = response["Body"]
    data = answer.read()
    if answer.status != 200:
        raise ServeError(f"the endpoint answered {answer.status}: {_first_line(data)}")
    return data


def invoke_sagemaker(settings: Settings, endpoint: str, body: bytes, content_type: str, accept: str) -> bytes:
    from botocore.exceptions import ClientError

    from gs_ds_env import aws

    client = aws.session(settings).client("sagemaker-runtime")
    try:
        response = client.invoke_endpoint(EndpointName=endpoint, Body=body, ContentType=content_type, Accept=accept)
    except ClientError as error:
        info = error.response.get("Error", {})
        status = error.response.get("OriginalStatusCode")
        reason = error.response.get("OriginalMessage") or info.get("Message", "")
        raise ServeError(
            f"endpoint {endpoint} answered {status or info.get('Code')}: {_first_line(reason.encode())}"
        ) from None
    return response["Body"].read()


def predict(
    settings: Settings, input_file: Path, endpoint: str | None, port: int, accept: str | None, output: Path | None
) -> None:
    """--endpoint NAME: a SageMaker endpoint; without it, the local endpoint on `port` (`inv serve`)."""
    kind = content_type_of(input_file)
    body = read_input(input_file)
    if output and output.exists():
        raise ConfigError(f"--output {output} exists: choose a new file (nothing is overwritten)")
    if output and not output.parent.is_dir():
        raise ConfigError(f"--output {output}: the folder {output.parent} does not exist: create it or choose another")
    accept = accept or kind
    if endpoint:
        data = invoke_sagemaker(settings, endpoint, body, kind, accept)
    else:
        data = invoke_local(body, kind, accept, port)
    if output:
        partial = output.with_name(f".{output.name}.partial")
        try:
            partial.write_bytes(data)
            partial.replace(output)
        except OSError as error:  # the answers are not lost: they go to stdout instead
            partial.unlink(missing_ok=True)
            _write_stdout(data)
            raise ServeError(
                f"cannot write --output {output} ({error.strerror}): the predictions went to stdout above"
            ) from None
        print(f"predictions: {output}", file=sys.stderr)
    else:
        _write_stdout(data)


def _write_stdout(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
