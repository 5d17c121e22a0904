"""A training job on SageMaker: started with the SDK's Estimator.fit, followed through CloudWatch, stopped on
Ctrl-C, and its results (model.tar.gz, metrics, bill, logs) collected from S3."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from gs_ds_env import aws, interrupts
from gs_ds_env.aws import LOG_GROUP
from gs_ds_env.data import s3_data
from gs_ds_env.interrupts import Interrupted, interruptible
from gs_ds_env.job import metrics, report, training_job
from gs_ds_env.job.training_job import (
    EMPTY_MODEL_HINT,
    JobResult,
    TrainingFailed,
    estimator,
    hint_for,
    parse_failure,
    read_metrics_json,
    saved_files,
)
from gs_ds_env.sdk import SDK_CONFIG, sagemaker
from gs_ds_env.settings import Settings

if TYPE_CHECKING:
    import boto3


def sdk_session(boto_session: boto3.Session):
    # The SDK's own sagemaker client would use botocore's default 60 s read timeout: give it ours.
    return sagemaker().Session(
        boto_session=boto_session, sagemaker_client=aws.client(boto_session, "sagemaker"), sagemaker_config=SDK_CONFIG
    )


def sagemaker_estimator(settings: Settings, session, image_uri: str, job_name: str, script=None):
    """The Estimator for SageMaker; settings.instance_type is a resolved type (never auto)."""
    return estimator(
        settings,
        image_uri,
        session,
        local=False,
        output_path=s3_data.uri(settings, "output"),
        role=settings.sagemaker_role_arn,
        instance_type=settings.instance_type,
        checkpoint_s3_uri=s3_data.uri(settings, "checkpoints", job_name),
        script=script,
        code_location=s3_data.uri(settings, "code"),
    )


def planned_request(
    settings: Settings,
    boto_session: boto3.Session,
    image_uri: str,
    channels: dict[str, str],
    job_name: str,
) -> dict:
    """The exact CreateTrainingJob request the SDK would send, captured before it is sent: nothing is called."""
    session = sdk_session(boto_session)
    captured: dict = {}
    events = session.sagemaker_client.meta.events

    def record(params, model, **_):
        captured[model.name] = copy.deepcopy(params)

    def answer_without_sending(model, **_):
        from botocore.awsrequest import AWSResponse

        if model.name != "CreateTrainingJob":
            raise RuntimeError(f"dry run: the SDK tried to call {model.name}")
        return AWSResponse(None, 200, {}, None), {"TrainingJobArn": f"arn:aws:sagemaker:::training-job/{job_name}"}

    events.register("before-parameter-build.sagemaker", record)
    events.register("before-call.sagemaker", answer_without_sending)
    sdk_logger = logging.getLogger("sagemaker")
    level = sdk_logger.level
    sdk_logger.setLevel(logging.WARNING)  # it would say "Creating training-job", which a dry run does not
    try:
        sagemaker_estimator(settings, session, image_uri, job_name).fit(
            channels or None, job_name=job_name, wait=False, logs=False
        )
    finally:
        sdk_logger.setLevel(level)
    return captured["CreateTrainingJob"]


def run_on_sagemaker(
    settings: Settings,
    boto_session: boto3.Session,
    image_uri: str,
    channels: dict[str, str],
    job_name: str,
    script=None,
    *,
    detach: bool = False,
) -> None:
    """Start the job, then (unless `detach`) follow it as `wait_for` does until it ends."""
    session = sdk_session(boto_session)
    estimator = sagemaker_estimator(settings, session, image_uri, job_name, script)
    try:
        with interruptible():
            # No channels: fit(None), so the request has no InputDataConfig (an empty list is refused by the API).
            estimator.fit(channels or None, job_name=job_name, wait=False, logs=False)
    except aws.ClientError as error:
        raise aws.explain(error, f"starting training job {job_name}") from None
    except Interrupted as interrupted:  # it may have been created before the signal came
        stop(boto_session, job_name, interrupted.status, interrupted.signum)
    if not detach:
        wait_for(boto_session, job_name)


def wait_for(boto_session: boto3.Session, job_name: str) -> None:
    """Stream the job's CloudWatch logs until it ends; a failed job raises TrainingFailed. Ctrl-C, SIGTERM or
    SIGHUP stop the job with StopTrainingJob (a paid job is never left running unseen) and raise Interrupted."""
    exceptions = sagemaker().exceptions
    try:
        with interruptible():
            sdk_session(boto_session).logs_for_job(job_name, wait=True, log_type="All")
    except Interrupted as interrupted:
        stop(boto_session, job_name, interrupted.status, interrupted.signum)
    except exceptions.UnexpectedStatusException:
        raise sagemaker_failure(boto_session, job_name) from None
    except aws.ClientError as error:
        raise aws.explain(error, f"following training job {job_name}") from None


# What stops each kind of job: the API, its name parameter, the CLI a person types when it fails.
STOP_CALLS = {
    "training": ("StopTrainingJob", "TrainingJobName", "stop-training-job --training-job-name"),
    "processing": ("StopProcessingJob", "ProcessingJobName", "stop-processing-job --processing-job-name"),
}


def stop(boto_session: boto3.Session, job_name: str, why: str, signum: int = 2, kind: str = "training") -> None:
    """Stop<Kind>Job, said as it is done; raises Interrupted with the status the run record keeps."""
    from botocore import xform_name

    operation, parameter, cli = STOP_CALLS[kind]
    name = interrupts.NAMES.get(signum, why)
    print(f"\n{why}: stopping {kind} job {job_name} (sagemaker:{operation})", flush=True)
    client = aws.client(boto_session, "sagemaker")
    try:
        getattr(client, xform_name(operation))(**{parameter: job_name})
    except (aws.ClientError, aws.BotoCoreError) as error:
        if aws.error_code(error) == "ValidationException":  # never created, or already ended
            raise Interrupted(f"{why}; no running job {job_name} to stop ({aws.error_code(error)})", signum) from None
        raise Interrupted(
            f"{why}; {operation} failed ({aws.error_code(error)}): stop {job_name} in the console or with "
            f"`aws sagemaker {cli} {job_name}`",
            signum,
        ) from None
    raise Interrupted(f"stopped ({name}): {operation} sent", signum)


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
    except (aws.ClientError, aws.BotoCoreError) as error:
        return [f"(logs unreadable: {aws.error_code(error)})"]


def sagemaker_failure(boto_session: boto3.Session, job_name: str) -> TrainingFailed:
    description = aws.client(boto_session, "sagemaker").describe_training_job(TrainingJobName=job_name)
    status = description.get("TrainingJobStatus")
    reason = description.get("FailureReason") or "(no FailureReason)"
    lines = last_log_lines(boto_session, job_name)
    hint = hint_for(reason + "\n" + "\n".join(lines))
    details = [f"training job {job_name}: {status}", f"FailureReason: {reason}", "last log lines:"]
    details += [f"  {line}" for line in lines] or ["  (no log lines)"]
    details.append(f"hint: {hint}")
    line = parse_failure(reason).line if "ErrorMessage" in reason else reason.splitlines()[0][:300]
    return TrainingFailed(
        f"training job {job_name} {status}: {line} (hint: {hint})",
        details,
        status=str(status).lower(),
        reason=line,
        log_tail=lines,
    )


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
    run_dir.mkdir(parents=True, exist_ok=True)
    local_copy = run_dir / "model.tar.gz"
    try:
        s3.download_file(bucket, key, str(local_copy))
    except (aws.ClientError, aws.BotoCoreError) as error:
        raise aws.explain(error, f"downloading {artifact}") from None
    if not saved_files(local_copy):  # SageMaker tars /opt/ml/model even when the program left it empty
        raise TrainingFailed(f"{artifact} is empty (hint: {EMPTY_MODEL_HINT})")
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
    billable = description.get("BillableTimeInSeconds") or description.get("TrainingTimeInSeconds")
    if billable is None and description.get("TrainingStartTime") and description.get("TrainingEndTime"):
        billable = int((description["TrainingEndTime"] - description["TrainingStartTime"]).total_seconds())
    count = description.get("ResourceConfig", {}).get("InstanceCount", settings.instance_count)
    cost = round(billable / 3600 * price * count, 4) if billable is not None and price is not None else None
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


class SageMakerJob:
    """The paid part: announce the cost ceiling, start the job, follow it (or return at once with --detach),
    collect its results, write its record — also when it fails or is stopped. `inv job.attach` resumes here."""

    def __init__(self, settings, boto_session, account, choice, pushed, checked, timer, job_name) -> None:
        self.settings, self.boto_session, self.account, self.choice = settings, boto_session, account, choice
        self.pushed, self.checked, self.timer, self.job_name = pushed, checked, timer, job_name
        self.run_dir = settings.paths.run(job_name)

    def write(self, result, pictures, channels, **fields) -> Path:
        target = sagemaker_fields(self.settings, self.account, self.choice, result, self.job_name)
        return report.write_run(
            self.settings, self.job_name, self.pushed, self.checked, result, self.timer.seconds, pictures,
            channels=channels, **{**target, **fields},
        )  # fmt: skip

    def run(self, channels: dict[str, str], script, detach: bool, **fields) -> Path:
        settings, price = self.settings, self.choice.price
        if price is not None:
            ceiling = price * settings.instance_count * (settings.max_wait if settings.use_spot else settings.max_run)
            print(
                f"starting a paid training job {self.job_name}: {settings.instance_count} x {settings.instance_type} "
                f"at {price:.3f} USD/h, at most {ceiling / 3600:.2f} USD (MAX_RUN/MAX_WAIT bound)",
                flush=True,
            )

        def failed(**outcome):
            self.write(None, [], channels, **fields, **outcome)

        with self.timer.step("train"), report.recording_failures(failed):
            run_on_sagemaker(
                settings, self.boto_session, self.pushed.uri, channels, self.job_name, script, detach=detach
            )
        if detach:
            run_json = self.write(None, [], channels, status=training_job.IN_PROGRESS, **fields)
            print(
                f"training job {self.job_name} started and left running (--detach): follow it and collect its "
                f"results with `inv job.attach {self.job_name}`; stop it with "
                f"`aws sagemaker stop-training-job --training-job-name {self.job_name}`",
                flush=True,
            )
            return run_json
        return self.collect(channels, script.metric_definitions if script else None, **fields)

    def collect(self, channels: dict[str, str], definitions, **fields) -> Path:
        def failed(**outcome):
            self.write(None, [], channels, **fields, **outcome)

        with self.timer.step("results"), report.recording_failures(failed):
            result = collect_sagemaker(
                self.settings, self.boto_session, self.job_name, self.choice.price, self.run_dir, definitions
            )
            output = fetch_output(self.boto_session, result.model_artifact, self.run_dir)
            pictures = report.extract_pictures(output, self.run_dir) if output else []
        return self.write(result, pictures, channels, **fields)


class AttachedChoice:
    """The instance choice as the detached run recorded it (price and evidence), for the attached run's record."""

    def __init__(self, price: float | None, evidence: str | None) -> None:
        self.price, self._evidence = price, evidence

    def evidence(self) -> str | None:
        return self._evidence
