"""A training job on SageMaker: started with the SDK's Estimator.fit, followed through CloudWatch, stopped on
Ctrl-C, its results collected (sagemaker_results.py) and its record written (SageMakerJob)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from gs_ds_env import aws, interrupts
from gs_ds_env.aws import LOG_GROUP
from gs_ds_env.data import s3_data
from gs_ds_env.interrupts import Interrupted, interruptible
from gs_ds_env.job import report, training_job
from gs_ds_env.job.draft import RunDraft, recording_failures
from gs_ds_env.job.sagemaker_results import collect_sagemaker, fetch_output, log_streams, sagemaker_fields
from gs_ds_env.job.training_job import (
    TrainingFailed,
    estimator,
    hint_for,
    parse_failure,
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


class SageMakerJob:
    """The paid part: announce the cost ceiling, start the job, follow it (or return at once with --detach),
    collect its results, write its record — also when it fails or is stopped. `inv job.attach` resumes here."""

    def __init__(self, draft: RunDraft, boto_session, account: str, choice) -> None:
        self.draft, self.boto_session, self.account, self.choice = draft, boto_session, account, choice
        self.settings, self.timer, self.job_name = draft.settings, draft.timer, draft.job_name
        self.run_dir = self.settings.paths.run(self.job_name)

    def write(self, result, pictures, channels, **outcome) -> Path:
        target = sagemaker_fields(self.settings, self.account, self.choice, result, self.job_name)
        return self.draft.write(result, pictures, channels=channels, target_part=target, **outcome)

    def on_failure(self, channels: dict[str, str]):
        return recording_failures(lambda **outcome: self.write(None, [], channels, **outcome))

    def run(self, channels: dict[str, str], script, detach: bool) -> Path:
        settings, price = self.settings, self.choice.price
        if price is not None:
            ceiling = price * settings.instance_count * (settings.max_wait if settings.use_spot else settings.max_run)
            print(
                f"starting a paid training job {self.job_name}: {settings.instance_count} x {settings.instance_type} "
                f"at {price:.3f} USD/h, at most {ceiling / 3600:.2f} USD (MAX_RUN/MAX_WAIT bound)",
                flush=True,
            )
        with self.timer.step("train"), self.on_failure(channels):
            run_on_sagemaker(
                settings, self.boto_session, self.draft.built.uri, channels, self.job_name, script, detach=detach
            )
        if detach:
            return self.left_running(channels)
        return self.collect(channels, script.metric_definitions if script else None)

    def left_running(self, channels: dict[str, str], kind: str = "training") -> Path:
        """--detach: the record says the job is in progress, and how to follow it and how to stop it is said."""
        run_json = self.write(None, [], channels, status=training_job.IN_PROGRESS)
        print(
            f"{kind} job {self.job_name} started and left running (--detach): follow it and collect its results with "
            f"`inv job.attach {self.job_name}`; stop it with `aws sagemaker {STOP_CALLS[kind][2]} {self.job_name}`",
            flush=True,
        )
        return run_json

    def collect(self, channels: dict[str, str], definitions) -> Path:
        with self.timer.step("results"), self.on_failure(channels):
            result = collect_sagemaker(
                self.settings, self.boto_session, self.job_name, self.choice.price, self.run_dir, definitions
            )
            output = fetch_output(self.boto_session, result.model_artifact, self.run_dir)
            pictures = report.extract_pictures(output, self.run_dir) if output else []
        return self.write(result, pictures, channels)


class AttachedChoice:
    """The instance choice as the detached run recorded it (price and evidence), for the attached run's record."""

    def __init__(self, price: float | None, evidence: str | None) -> None:
        self.price, self._evidence = price, evidence

    def evidence(self) -> str | None:
        return self._evidence
