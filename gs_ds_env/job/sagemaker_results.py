"""What a finished SageMaker training job left: its model checked in S3 and copied here, its output, its metrics
(SageMaker's reading of the log, the log itself, metrics.json), its bill and log streams; and the run record's
SageMaker part (where everything is, what it cost)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gs_ds_env import aws
from gs_ds_env.aws import LOG_GROUP
from gs_ds_env.data import s3_data
from gs_ds_env.job import metrics, training_job
from gs_ds_env.job.training_job import EMPTY_MODEL_HINT, JobResult, TrainingFailed, read_metrics_json, saved_files
from gs_ds_env.settings import Settings

if TYPE_CHECKING:
    import boto3


def log_streams(logs, job_name: str) -> list[str]:
    """The job's CloudWatch streams (<job>/algo-N-…); raises ClientError when there are none yet."""
    response = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=job_name)
    return [stream["logStreamName"] for stream in response["logStreams"]]


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


def job_log_lines(boto_session: boto3.Session, job_name: str, most: int = 20_000) -> list[str]:
    """Every line the job printed to CloudWatch (up to `most`), to read its metrics as SageMaker does."""
    logs = aws.client(boto_session, "logs")
    lines: list[str] = []
    try:
        for stream in log_streams(logs, job_name):
            token = None
            while len(lines) < most:
                page = logs.get_log_events(
                    logGroupName=LOG_GROUP,
                    logStreamName=stream,
                    startFromHead=True,
                    **({"nextToken": token} if token else {}),
                )
                lines += [event["message"] for event in page["events"]]
                if not page["events"] or page.get("nextForwardToken") in (None, token):
                    break
                token = page["nextForwardToken"]
    except (aws.ClientError, aws.BotoCoreError):
        pass
    return lines[:most]


def collect_sagemaker(
    settings: Settings,
    boto_session: boto3.Session,
    job_name: str,
    price: float | None,
    run_dir: Path,
    definitions: list[dict[str, str]] | None = None,
) -> JobResult:
    """Verify model.tar.gz really is in S3, copy it to runs/<job>/; metrics from the job's log lines (as SageMaker
    reads them with the metric definitions, FinalMetricDataList) and metrics.json when there is one; billable
    time and cost."""
    description = aws.client(boto_session, "sagemaker").describe_training_job(TrainingJobName=job_name)
    artifact = description.get("ModelArtifacts", {}).get("S3ModelArtifacts", "")
    local_copy = _model_copy(boto_session, description, artifact, job_name, run_dir / "model.tar.gz")
    saved = read_metrics_json(local_copy)
    definitions = definitions or metrics.default_definitions()
    defined = {definition["Name"] for definition in definitions}
    # SageMaker's own reading of the log with the job's definitions; then the log itself (also the project's
    # `split:name=value` lines no definition names), then metrics.json.
    found = {
        item["MetricName"]: item["Value"]
        for item in description.get("FinalMetricDataList", [])
        if item.get("MetricName") in defined
    }
    found.update(metrics.from_lines(job_log_lines(boto_session, job_name), definitions))
    found.update(saved.get("metrics", {}))
    billable, cost = _bill(description, settings.instance_count, price)
    try:
        streams = log_streams(aws.client(boto_session, "logs"), job_name)
    except (aws.ClientError, aws.BotoCoreError):
        streams = []
    return JobResult(
        artifact,
        found,
        saved.get("training_seconds"),
        description=description,
        local_copy=local_copy,
        billable_seconds=billable,
        cost_usd=cost,
        log_streams=streams,
    )


def _model_copy(boto_session: boto3.Session, description: dict, artifact: str, job_name: str, local_copy: Path) -> Path:
    """model.tar.gz, checked in S3 and copied here: a completed job that saved no model is a failure."""
    bucket, key = split_s3(artifact)
    s3 = aws.client(boto_session, "s3")
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except aws.ClientError as error:
        if aws.error_code(error) not in {"404", "NoSuchKey", "NotFound"}:
            raise aws.explain(error, f"checking {artifact}") from None
        raise TrainingFailed(
            f"training job {job_name} is {description.get('TrainingJobStatus')} but {artifact or 'its model'} does "
            f"not exist in S3 (hint: {EMPTY_MODEL_HINT}; or the execution role cannot write the output prefix)"
        ) from None
    local_copy.parent.mkdir(parents=True, exist_ok=True)
    try:
        s3.download_file(bucket, key, str(local_copy))
    except (aws.ClientError, aws.BotoCoreError) as error:
        raise aws.explain(error, f"downloading {artifact}") from None
    if not saved_files(local_copy):  # SageMaker tars /opt/ml/model even when the program left it empty
        raise TrainingFailed(f"{artifact} is empty (hint: {EMPTY_MODEL_HINT})")
    return local_copy


def _bill(description: dict, instance_count: int, price: float | None) -> tuple[int | None, float | None]:
    """Billable seconds (SageMaker's, else the training time) and what they cost at `price` per instance-hour."""
    billable = description.get("BillableTimeInSeconds") or description.get("TrainingTimeInSeconds")
    if billable is None and description.get("TrainingStartTime") and description.get("TrainingEndTime"):
        billable = int((description["TrainingEndTime"] - description["TrainingStartTime"]).total_seconds())
    count = description.get("ResourceConfig", {}).get("InstanceCount", instance_count)
    cost = round(billable / 3600 * price * count, 4) if billable is not None and price is not None else None
    return billable, cost


def console_urls(region: str, job_name: str) -> dict[str, str]:
    console = f"https://{region}.console.aws.amazon.com"
    return {
        "job": f"{console}/sagemaker/home?region={region}#/jobs/{job_name}",
        "logs": f"{console}/cloudwatch/home?region={region}#logsV2:log-groups/log-group/"
        f"$252Faws$252Fsagemaker$252FTrainingJobs$3FlogStreamNameFilter$3D{job_name}",
    }


def sagemaker_fields(
    settings: Settings, account: str, choice, result: training_job.JobResult | None, job_name: str
) -> dict:
    """The run record's SageMaker part: account, resources, instance evidence, bill, logs, console links (the
    job's own facts, `result`, once it has ended)."""
    urls = console_urls(settings.aws_region, job_name)
    fields = {
        "account": account,
        "s3_prefix_uri": s3_data.uri(settings),
        "ecr_repository": settings.ecr_repository,
        "role_arn": settings.sagemaker_role_arn,
        "instance_type": settings.instance_type,
        "instance_count": settings.instance_count,
        "spot": settings.use_spot,
        "instance_evidence": choice.evidence() if choice else None,
        "price_usd_per_hour": choice.price if choice else None,
        "log_stream": f"{aws.LOG_GROUP} / {job_name}/algo-1-*",
        "console_url": urls["job"],
        "logs_url": urls["logs"],
    }
    if result is not None:
        fields.update(
            model_local_copy=str(result.local_copy),
            billable_seconds=result.billable_seconds,
            cost_usd=result.cost_usd,
            log_stream=f"{aws.LOG_GROUP} / {', '.join(result.log_streams) or job_name + '/algo-1-*'}",
            job_status=result.description.get("TrainingJobStatus"),
        )
    return fields
