"""The training job on SageMaker: start it with the SDK's Estimator, stream its logs, then check what it left in S3."""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import BotoCoreError, ClientError

from . import aws, s3_data, training_job
from .iam import LOG_GROUP
from .settings import Settings
from .sm import SDK_CONFIG, sagemaker
from .training_job import TrainingFailed

EMPTY_MODEL_HINT = (
    "empty /opt/ml/model: the training program must save the model (and metrics.json) to /opt/ml/model before it exits"
)
# FailureReason / last log lines -> what usually causes it and what to do.
HINTS = [
    # An ECR image URI in an unrelated log line must not trigger the ECR hint: match pull failures only.
    (
        r"CannotPullContainer|Cannot pull|pull access denied|manifest .* not found|"
        r"not authorized to perform: ecr:|ecr:(BatchGetImage|GetDownloadUrlForLayer|GetAuthorizationToken)",
        "ECR auth or image: the execution role needs ecr:BatchGetImage/GetDownloadUrlForLayer on the repository, and "
        "the image must be in the job's region (`inv push`; policy from `inv iam-policy`)",
    ),
    (
        r"assume role|AssumeRole|not authorized to perform: sts",
        "role: SAGEMAKER_ROLE_ARN must trust sagemaker.amazonaws.com (trust policy from `inv iam-policy`)",
    ),
    (
        r"AccessDenied|Access Denied|\b403\b",
        "role permissions: the execution role cannot read the channels or write the output prefix "
        "(execution-role policy from `inv iam-policy`)",
    ),
    (
        r"No S3 objects found|Data download failed|does not exist.*s3|NoSuchKey",
        "channel paths: run `inv data --target sagemaker` and check the train/validation URIs in the request",
    ),
    (
        r"executable file not found|exec: \"train\"|no such file or directory.*train|Exec format error",
        "no entry point: the image must have an executable `train` on PATH (docker/Dockerfile puts training/ there)",
    ),
    (r"/opt/ml/model", EMPTY_MODEL_HINT),
    (
        r"ResourceLimitExceeded|quota",
        "quota: run `inv instance` and request an increase in Service Quotas, or set INSTANCE_TYPE=auto",
    ),
    (
        r"AlgorithmError|Traceback|Error",
        "the training program failed: read the log lines above; reproduce with `make deploy TARGET=local`",
    ),
]


@dataclass
class CloudResult:
    description: dict
    model_artifact: str
    local_copy: Path
    metrics: dict[str, float]
    training_seconds: float | None
    billable_seconds: int | None
    cost_usd: float | None
    log_streams: list[str]


def hint_for(text: str) -> str:
    for pattern, hint in HINTS:
        if re.search(pattern, text, re.IGNORECASE):
            return hint
    return "see the job in the SageMaker console and its CloudWatch logs"


def sdk_session(boto_session: boto3.Session):
    # The SDK's own sagemaker client would use botocore's default 60 s read timeout: give it ours.
    return sagemaker().Session(
        boto_session=boto_session, sagemaker_client=aws.client(boto_session, "sagemaker"), sagemaker_config=SDK_CONFIG
    )


def job_estimator(settings: Settings, session, image_uri: str, instance_type: str, job_name: str, script=None):
    return training_job.estimator(
        settings,
        image_uri,
        session,
        local=False,
        output_path=s3_data.uri(settings, "output"),
        role=settings.sagemaker_role_arn,
        instance_type=instance_type,
        checkpoint_s3_uri=s3_data.uri(settings, "checkpoints", job_name),
        script=script,
        code_location=s3_data.uri(settings, "code"),
    )


def planned_request(
    settings: Settings,
    boto_session: boto3.Session,
    image_uri: str,
    channels: dict[str, str],
    instance_type: str,
    job_name: str,
) -> dict:
    """The exact CreateTrainingJob request the SDK would send, captured before it is sent: nothing is called."""
    session = sdk_session(boto_session)
    captured: dict = {}
    events = session.sagemaker_client.meta.events

    def record(params, model, **_):
        captured[model.name] = copy.deepcopy(params)

    def answer_without_sending(model, **_):
        if model.name != "CreateTrainingJob":
            raise RuntimeError(f"dry run: the SDK tried to call {model.name}")
        return AWSResponse(None, 200, {}, None), {"TrainingJobArn": f"arn:aws:sagemaker:::training-job/{job_name}"}

    events.register("before-parameter-build.sagemaker", record)
    events.register("before-call.sagemaker", answer_without_sending)
    sdk_logger = logging.getLogger("sagemaker")
    level = sdk_logger.level
    sdk_logger.setLevel(logging.WARNING)  # it would say "Creating training-job", which a dry run does not
    try:
        job_estimator(settings, session, image_uri, instance_type, job_name).fit(
            channels or None, job_name=job_name, wait=False, logs=False
        )
    finally:
        sdk_logger.setLevel(level)
    return captured["CreateTrainingJob"]


def run(
    settings: Settings,
    boto_session: boto3.Session,
    image_uri: str,
    channels: dict[str, str],
    instance_type: str,
    job_name: str,
    script=None,
) -> None:
    """Start the job and stream its CloudWatch logs until it ends; a failed job raises TrainingFailed."""
    session = sdk_session(boto_session)
    estimator = job_estimator(settings, session, image_uri, instance_type, job_name, script)
    exceptions = sagemaker().exceptions
    try:
        # No channels: fit(None), so the request has no InputDataConfig (an empty list is refused by the API).
        estimator.fit(channels or None, job_name=job_name, wait=True, logs="All")
    except ClientError as error:
        raise aws.explain(error, f"starting training job {job_name}") from None
    except exceptions.UnexpectedStatusException:
        raise failure(boto_session, job_name) from None


def log_streams(logs, job_name: str) -> list[str]:
    """The job's CloudWatch streams (<job>/algo-N-…); raises ClientError when there are none yet."""
    response = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=job_name)
    return [stream["logStreamName"] for stream in response["logStreams"]]


def last_log_lines(boto_session: boto3.Session, job_name: str, count: int = 15) -> list[str]:
    logs = aws.client(boto_session, "logs")
    try:
        lines = []
        for stream in log_streams(logs, job_name):
            events = logs.get_log_events(
                logGroupName=LOG_GROUP, logStreamName=stream, limit=count, startFromHead=False
            )["events"]
            lines += [event["message"].rstrip() for event in events]
        return lines[-count:]
    except (ClientError, BotoCoreError) as error:
        return [f"(logs unreadable: {aws.error_code(error)})"]


def failure(boto_session: boto3.Session, job_name: str) -> TrainingFailed:
    description = aws.client(boto_session, "sagemaker").describe_training_job(TrainingJobName=job_name)
    status = description.get("TrainingJobStatus")
    reason = description.get("FailureReason") or "(no FailureReason)"
    lines = last_log_lines(boto_session, job_name)
    hint = hint_for(reason + "\n" + "\n".join(lines))
    details = [f"training job {job_name}: {status}", f"FailureReason: {reason}", "last log lines:"]
    details += [f"  {line}" for line in lines] or ["  (no log lines)"]
    details.append(f"hint: {hint}")
    return TrainingFailed(f"training job {job_name} {status}: {reason.splitlines()[0][:200]} (hint: {hint})", details)


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def fetch_output(boto_session: boto3.Session, model_artifact: str, run_dir: Path) -> Path | None:
    """Copy output.tar.gz (metrics, pictures) from beside model.tar.gz to runs/<job>/; None when there is none."""
    bucket, key = split_s3(model_artifact.rsplit("/", 1)[0] + "/output.tar.gz")
    target = run_dir / "output.tar.gz"
    try:
        aws.client(boto_session, "s3").download_file(bucket, key, str(target))
    except aws.CALL_ERRORS:
        return None
    return target


def collect(
    settings: Settings, boto_session: boto3.Session, job_name: str, price: float | None, run_dir: Path
) -> CloudResult:
    """Verify model.tar.gz really is in S3, copy it to runs/<job>/, read metrics.json, billable time and cost."""
    description = aws.client(boto_session, "sagemaker").describe_training_job(TrainingJobName=job_name)
    artifact = description.get("ModelArtifacts", {}).get("S3ModelArtifacts", "")
    bucket, key = split_s3(artifact)
    s3 = aws.client(boto_session, "s3")
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if aws.error_code(error) not in {"404", "NoSuchKey", "NotFound"}:
            raise aws.explain(error, f"checking {artifact}") from None
        raise TrainingFailed(
            f"training job {job_name} is {description.get('TrainingJobStatus')} but {artifact or 'its model'} does "
            f"not exist in S3 (hint: {EMPTY_MODEL_HINT}; or the execution role cannot write the output prefix)"
        ) from None
    run_dir.mkdir(parents=True, exist_ok=True)
    local_copy = run_dir / "model.tar.gz"
    try:
        s3.download_file(bucket, key, str(local_copy))
    except (ClientError, BotoCoreError) as error:
        raise aws.explain(error, f"downloading {artifact}") from None
    try:
        metrics = training_job.read_metrics_from_tarball(local_copy)
    except TrainingFailed as error:
        # SageMaker tars /opt/ml/model even when it is empty: an existing model.tar.gz proves little by itself.
        raise TrainingFailed(
            f"{artifact} holds no metrics.json ({error.__cause__ or 'missing'}) (hint: {EMPTY_MODEL_HINT})"
        ) from None
    billable = description.get("BillableTimeInSeconds") or description.get("TrainingTimeInSeconds")
    if billable is None and description.get("TrainingStartTime") and description.get("TrainingEndTime"):
        billable = int((description["TrainingEndTime"] - description["TrainingStartTime"]).total_seconds())
    count = description.get("ResourceConfig", {}).get("InstanceCount", settings.instance_count)
    cost = round(billable / 3600 * price * count, 4) if billable is not None and price is not None else None
    try:
        streams = log_streams(aws.client(boto_session, "logs"), job_name)
    except (ClientError, BotoCoreError):
        streams = []
    return CloudResult(
        description, artifact, local_copy, metrics["metrics"], metrics.get("training_seconds"), billable, cost, streams
    )


def console_urls(region: str, job_name: str) -> dict[str, str]:
    console = f"https://{region}.console.aws.amazon.com"
    return {
        "job": f"{console}/sagemaker/home?region={region}#/jobs/{job_name}",
        "logs": f"{console}/cloudwatch/home?region={region}#logsV2:log-groups/log-group/"
        f"$252Faws$252Fsagemaker$252FTrainingJobs$3FlogStreamNameFilter$3D{job_name}",
    }
