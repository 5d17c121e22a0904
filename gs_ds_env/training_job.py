"""The training job, for both targets: one `sagemaker.estimator.Estimator` for the theme's image, run in SageMaker
local mode (Docker on this machine: `train_local`) or on SageMaker (`run_on_sagemaker`, then `collect_sagemaker`
checks what it left in S3). deploy.py orders the steps around it: image, data, parity, the job, the run record."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import shutil
import signal
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import BotoCoreError, ClientError

from . import aws, s3_data
from .iam import LOG_GROUP
from .settings import Settings

# ---- the SageMaker SDK (v2), imported quietly ----------------------------------------------------------
# Passed to every Session as its SDK-defaults config, so the opt-out holds whatever config files exist.
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def sagemaker():
    """The SDK module, its v2 deprecation banner silenced and telemetry opted out."""
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)
    logging.getLogger("sagemaker.local.image").setLevel(logging.WARNING)  # it dumps the whole compose file
    # It logs "To opt out of telemetry…" even when SDK_CONFIG has opted out.
    logging.getLogger("sagemaker.telemetry.telemetry_logging").setLevel(logging.WARNING)
    # The SDK sets its loggers to INFO; botocore then reports every endpoint it resolves from AWS_ENDPOINT_URL.
    logging.getLogger("botocore.configprovider").setLevel(logging.WARNING)
    import sagemaker as sdk

    return sdk


# ---- the job, both targets ----------------------------------------------------------------------------
# The training program prints `validation:auc=0.8712`; SageMaker turns these lines into job metrics.
METRIC_DEFINITIONS = [
    {"Name": f"{split}:{metric}", "Regex": f"^{split}:{metric}=([0-9.]+)"}
    for split in ("train", "validation")
    for metric in ("auc", "accuracy", "f1", "logloss")
]
# Script mode on several hosts: the toolkit starts the script with torchrun (what the SDK's PyTorch estimator
# sets for distribution={"torch_distributed": {"enabled": True}}; the generic Estimator takes it as a hyperparameter).
TORCH_DISTRIBUTED = "sagemaker_torch_distributed_enabled"
LOCAL_ROLE = "arn:aws:iam::000000000000:role/local-mode-unused"  # local mode needs a role string, never uses it


@dataclass(frozen=True)
class ScriptMode:
    """The user's code for script mode: an entry point inside source_dir, and its hyperparameters."""

    entry_point: str  # relative to source_dir
    source_dir: Path
    hyperparameters: dict[str, str]


class TrainingFailed(RuntimeError):
    """The job failed or left no model; `details` holds the FailureReason, last log lines and a hint."""

    def __init__(self, line: str, details: list[str] | None = None) -> None:
        super().__init__(line)
        self.details = details or []


@dataclass
class JobResult:
    """What a finished job left, either target: its model.tar.gz and metrics.json, and on SageMaker its bill."""

    model_artifact: str  # runs/<job>/model.tar.gz locally, s3://…/model.tar.gz on SageMaker
    metrics: dict[str, float]
    training_seconds: float | None
    channels: dict[str, str] = field(default_factory=dict)  # local mode: the file:// inputs
    description: dict = field(default_factory=dict)  # SageMaker: DescribeTrainingJob
    local_copy: Path | None = None
    billable_seconds: int | None = None
    cost_usd: float | None = None
    log_streams: list[str] = field(default_factory=list)


def new_job_name(settings: Settings) -> str:
    return sagemaker().utils.name_from_base(settings.base_job_name)


def estimator(
    settings: Settings,
    image_uri: str,
    session,
    *,
    local: bool,
    output_path: str,
    role: str,
    instance_type: str,
    checkpoint_s3_uri: str | None = None,
    script: ScriptMode | None = None,
    code_location: str | None = None,
):
    sagemaker()  # quiet the SDK before its first import
    from sagemaker.estimator import Estimator

    options = dict(
        image_uri=image_uri,
        role=role,
        instance_count=settings.instance_count,  # local mode too: one container per host, on one network
        instance_type="local" if local else instance_type,
        output_path=output_path,
        base_job_name=settings.base_job_name,
        hyperparameters=script.hyperparameters if script else settings.hyperparameters,
        metric_definitions=METRIC_DEFINITIONS,
        sagemaker_session=session,
        # The debugger hook and profiler start extra processing jobs: they cost and use quota.
        debugger_hook_config=False,
        disable_profiler=True,
    )
    if script:
        # Script mode: the SDK ships source_dir (mounted in local mode, sourcedir.tar.gz on SageMaker) and sets
        # sagemaker_program / sagemaker_submit_directory, which the toolkit in the image reads.
        options.update(entry_point=script.entry_point, source_dir=str(script.source_dir))
        if code_location:  # sourcedir.tar.gz under the project's prefix, not the SDK's default bucket
            options.update(code_location=code_location)
    if not local:
        options.update(
            volume_size=settings.volume_size,
            max_run=settings.max_run,
            use_spot_instances=settings.use_spot,
            max_wait=settings.max_wait if settings.use_spot else None,
            checkpoint_s3_uri=checkpoint_s3_uri if settings.use_spot else None,
            tags=[{"Key": k, "Value": v} for k, v in settings.tags.items()] or None,
        )
    return Estimator(**options)


def _session_without_credentials(region: str):
    """A boto3 session that finds no AWS credentials. Local mode with file:// channels needs none, and the SDK
    would otherwise copy the caller's keys into the container's environment and its docker-compose.yaml."""
    import boto3
    import botocore.session
    from botocore.credentials import CredentialResolver

    core = botocore.session.Session()
    core.register_component("credential_provider", CredentialResolver(providers=[]))
    return boto3.Session(botocore_session=core, region_name=region)


def local_session(settings: Settings, container_root: Path):
    sagemaker()
    from sagemaker.local import LocalSession

    session = LocalSession(boto_session=_session_without_credentials(settings.aws_region), sagemaker_config=SDK_CONFIG)
    session.config = {"local": {"local_code": True, "container_root": str(container_root)}}
    return session


def _compose_containers(scratch: Path) -> list[str]:
    """The container names of the compose files local mode wrote under `scratch`."""
    import yaml

    names = []
    for compose_file in scratch.glob("*/docker-compose.yaml"):
        services = (yaml.safe_load(compose_file.read_text()) or {}).get("services", {})
        names += [service["container_name"] for service in services.values() if "container_name" in service]
    return names


def _remove_containers(names: list[str]) -> None:
    """Stop (if still running, e.g. after Ctrl-C) and remove local mode's containers: none is left behind."""
    from docker.errors import DockerException, NotFound

    import docker

    try:
        client = docker.from_env()
        for name in names:
            with contextlib.suppress(NotFound):
                client.containers.get(name).remove(force=True)
    except DockerException as error:
        print(f"warning: could not remove the containers {', '.join(names)}: {error}", flush=True)


def _failure_reason(run_dir: Path) -> str:
    """The reason in /opt/ml/output/failure as the training program wrote it. Local mode tars /opt/ml/output
    into runs/<job>/output.tar.gz even for a failed job; empty when the program wrote no reason. The toolkit's
    ExecuteUserScriptError carries the script's stderr: its last line is the script's own error."""
    try:
        with tarfile.open(run_dir / "output.tar.gz") as archive:
            member = archive.extractfile("failure")
            text = member.read().decode(errors="replace").strip() if member else ""
    except (KeyError, OSError, tarfile.TarError):
        return ""
    if 'ErrorMessage "' in text:
        message = text.split('ErrorMessage "', 1)[1].split('"\nCommand', 1)[0].rstrip('"')
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        if lines:
            last = lines[-1]
            # The toolkit turns "ValueError: boom" into two lines: put the exception's name back.
            if len(lines) > 1 and re.fullmatch(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)", lines[-2]):
                last = f"{lines[-2]}: {last}"
            return f"{text.splitlines()[0].rstrip(':')}: {last[:300]}"
    return text.splitlines()[0][:300] if text else ""


def _fit(job, inputs: dict[str, str], job_name: str) -> BaseException | None:
    try:
        job.fit(inputs or None, job_name=job_name, wait=True, logs=True)
    except BaseException as error:  # noqa: BLE001 - the caller decides, knowing whether Ctrl-C was pressed
        return error
    return None


@contextlib.contextmanager
def _noting_interrupts():
    """Yield an Event set on SIGINT (which still raises KeyboardInterrupt); only the main thread can listen."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def on_interrupt(signum, frame):
        interrupted.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def train_local(
    settings: Settings, image_uri: str, channels: dict[str, Path], job_name: str, script: ScriptMode | None = None
) -> JobResult:
    """Run the real image through SageMaker local mode; artifacts land in runs/<job>/.

    Afterwards, whatever happened, the containers are removed and the SDK's scratch folder (compose file,
    config copies) is deleted; a Ctrl-C leaves runs/<job>/INTERRUPTED saying so."""
    run_dir = settings.paths.run(job_name)
    scratch = run_dir / "container"
    scratch.mkdir(parents=True, exist_ok=True)
    session = local_session(settings, scratch)
    inputs = {channel: f"file://{folder.resolve()}" for channel, folder in channels.items()}
    job = estimator(
        settings,
        image_uri,
        session,
        local=True,
        output_path=f"file://{run_dir.resolve()}",
        role=LOCAL_ROLE,
        instance_type="local",
        script=script,
    )
    try:
        with _noting_interrupts() as interrupted:
            failure = _fit(job, inputs, job_name)
        # The SDK swallows a Ctrl-C or turns it into other errors in its clean-up: the flag says what happened.
        if interrupted.is_set():
            (run_dir / "INTERRUPTED").write_text(
                "interrupted (Ctrl-C) before the job finished: nothing here is a result\n"
            )
            raise KeyboardInterrupt
        if isinstance(failure, RuntimeError):  # the SDK's "Failed to run: [docker compose ...]"
            reason = _failure_reason(run_dir) or str(failure).splitlines()[0][:300]
            raise TrainingFailed(
                f"local training job {job_name} failed: {reason} (the container's log is above; "
                "/opt/ml/output/failure holds the program's reason)"
            )
        if failure is not None:
            raise failure
    finally:
        _remove_containers(_compose_containers(scratch))
        shutil.rmtree(scratch, ignore_errors=True)
    artifact = Path(job.model_data.removeprefix("file://"))
    metrics = read_metrics_from_tarball(artifact)
    return JobResult(str(artifact), metrics["metrics"], metrics.get("training_seconds"), channels=inputs)


def read_metrics_from_tarball(artifact: Path) -> dict:
    try:
        with tarfile.open(artifact) as archive:
            member = archive.extractfile("metrics.json")
            return json.load(member)
    except (KeyError, tarfile.TarError, OSError, ValueError) as error:
        raise TrainingFailed(
            f"{artifact} holds no readable metrics.json ({error}): the training program must save "
            "the model and metrics.json to /opt/ml/model before it exits"
        ) from None


# ---- on SageMaker -------------------------------------------------------------------------------------
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
) -> None:
    """Start the job and stream its CloudWatch logs until it ends; a failed job raises TrainingFailed."""
    session = sdk_session(boto_session)
    estimator = sagemaker_estimator(settings, session, image_uri, job_name, script)
    exceptions = sagemaker().exceptions
    try:
        # No channels: fit(None), so the request has no InputDataConfig (an empty list is refused by the API).
        estimator.fit(channels or None, job_name=job_name, wait=True, logs="All")
    except ClientError as error:
        raise aws.explain(error, f"starting training job {job_name}") from None
    except exceptions.UnexpectedStatusException:
        raise sagemaker_failure(boto_session, job_name) from None


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


def sagemaker_failure(boto_session: boto3.Session, job_name: str) -> TrainingFailed:
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


def collect_sagemaker(
    settings: Settings, boto_session: boto3.Session, job_name: str, price: float | None, run_dir: Path
) -> JobResult:
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
        metrics = read_metrics_from_tarball(local_copy)
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
    return JobResult(
        artifact,
        metrics["metrics"],
        metrics.get("training_seconds"),
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
