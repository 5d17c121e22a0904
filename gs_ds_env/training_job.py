"""The training job, for both targets: one `sagemaker.estimator.Estimator` for the theme's image, run in SageMaker
local mode (Docker on this machine: `train_local`) or on SageMaker (`run_on_sagemaker`, then `collect_sagemaker`
checks what it left in S3). deploy.py orders the steps around it: image, data, parity, the job, the run record."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import re
import shutil
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import BotoCoreError, ClientError

from . import aws, interrupts, local_containers, metrics, s3_data
from .aws import LOG_GROUP
from .interrupts import Interrupted, interruptible
from .script_mode import SEED_VARIABLE, ScriptMode, job_base
from .sdk import SDK_CONFIG, name_from_base, sagemaker
from .settings import Settings

# ---- the job, both targets ----------------------------------------------------------------------------
LOCAL_ROLE = "arn:aws:iam::000000000000:role/local-mode-unused"  # local mode needs a role string, never uses it
# A run's status in run.json: SageMaker's words where it has them.
COMPLETED, FAILED, STOPPED_MAX_RUN, IN_PROGRESS = "completed", "failed", "stopped: max run", "in progress (detached)"


class TrainingFailed(RuntimeError):
    """The job did not complete (failed, or stopped at MAX_RUN): `status` and `reason` go into its run record;
    `details` holds the FailureReason, last log lines and a hint."""

    def __init__(
        self, line: str, details: list[str] | None = None, *, status: str = FAILED, reason: str = "", **facts
    ) -> None:
        super().__init__(line)
        self.details = details or []
        self.status = status
        self.reason = reason or line
        self.facts = facts  # exit_code, log_path: what the record adds when known


@dataclass
class JobResult:
    """What a finished job left, either target: its model.tar.gz and metrics, and on SageMaker its bill."""

    model_artifact: str  # runs/<job>/model.tar.gz locally, s3://…/model.tar.gz on SageMaker
    metrics: dict[str, float]
    training_seconds: float | None
    status: str = COMPLETED
    log_path: str | None = None  # local mode: everything the job printed (runs/<job>/job.log)
    channels: dict[str, str] = field(default_factory=dict)  # local mode: the file:// inputs
    description: dict = field(default_factory=dict)  # SageMaker: DescribeTrainingJob
    local_copy: Path | None = None
    billable_seconds: int | None = None
    cost_usd: float | None = None
    log_streams: list[str] = field(default_factory=list)
    steps: dict[str, float] = field(default_factory=dict)  # local mode: where the job's wall time went


def new_job_name(settings: Settings, program: str = "titanic") -> str:
    """BASE_JOB_NAME-<theme>-<program>-<timestamp>, at most 63 characters (the SDK trims the base)."""
    return name_from_base(job_base(settings, program))


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
        # Script mode: exactly the user's hyperparameters; the project's programs find their seed in GS_SEED.
        hyperparameters=script.hyperparameters if script else settings.hyperparameters,
        environment={SEED_VARIABLE: str(settings.seed)},
        metric_definitions=script.metric_definitions if script else metrics.default_definitions(),
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


@dataclass(frozen=True)
class Failure:
    """What /opt/ml/output/failure says: one line for the error, the script's last stderr lines, its exit code."""

    line: str
    tail: list[str]
    exit_code: int | None


def parse_failure(text: str) -> Failure:
    """The toolkit writes `ExecuteUserScriptError:\nExitCode N\nErrorMessage "<the script's last stderr
    lines>"\nCommand "…"`; the project's own programs write their reason as plain text."""
    text = text.strip()
    code = re.search(r"^ExitCode (-?\d+)$", text, re.MULTILINE)
    if 'ErrorMessage "' in text:
        message = text.split('ErrorMessage "', 1)[1].split('"\nCommand', 1)[0].rstrip('"')
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        error_class = text.splitlines()[0].rstrip(":")
        last = (
            lines[-1] if lines else f"(the script wrote nothing to stderr; exit code {code.group(1) if code else '?'})"
        )
        # An older toolkit splits "ValueError: boom" into two lines: put the exception's name back.
        if len(lines) > 1 and re.fullmatch(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)", lines[-2]):
            last = f"{lines[-2]}: {last}"
        return Failure(f"{error_class}: {last[:300]}", lines, int(code.group(1)) if code else None)
    lines = [line for line in text.splitlines() if line.strip()]
    return Failure(lines[0][:300] if lines else "", lines[-20:], int(code.group(1)) if code else None)


def _local_failure(run_dir: Path) -> Failure:
    """Local mode tars /opt/ml/output into runs/<job>/output.tar.gz even for a failed job."""
    try:
        with tarfile.open(run_dir / "output.tar.gz") as archive:
            member = archive.extractfile("failure")
            return parse_failure(member.read().decode(errors="replace") if member else "")
    except (KeyError, OSError, tarfile.TarError):
        return Failure("", [], None)


class _Tee(io.TextIOBase):
    """sys.stdout while a local job runs: the terminal sees everything, and so does runs/<job>/job.log."""

    def __init__(self, terminal, log) -> None:
        self.terminal, self.log = terminal, log

    @property
    def encoding(self) -> str:
        return getattr(self.terminal, "encoding", None) or "utf-8"

    def isatty(self) -> bool:
        return self.terminal.isatty()

    def fileno(self) -> int:
        return self.terminal.fileno()

    def write(self, text: str) -> int:
        self.terminal.write(text)
        self.log.write(text)
        return len(text)

    def flush(self) -> None:
        self.terminal.flush()
        self.log.flush()


@contextlib.contextmanager
def _logged_to(path: Path):
    import sys

    with path.open("a", encoding="utf-8", errors="replace") as log:
        terminal = sys.stdout
        sys.stdout = _Tee(terminal, log)
        try:
            yield
        finally:
            sys.stdout = terminal


class _MaxRunWatchdog:
    """MAX_RUN in local mode, as SageMaker applies it: when it is reached, the job's containers are stopped
    (SIGTERM, then SIGKILL after a grace period) and the job ends with status `stopped: max run`."""

    GRACE_SECONDS = 10

    def __init__(self, seconds: int, scratch: Path) -> None:
        self.seconds, self.scratch = seconds, scratch
        self.fired = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()

    def _watch(self) -> None:
        if self._done.wait(self.seconds):
            return
        self.fired.set()
        print(f"\nMAX_RUN={self.seconds} s reached: stopping the job's containers", flush=True)
        while not self._done.is_set():  # compose may still be creating them
            local_containers.stop(self.scratch, self.GRACE_SECONDS)
            self._done.wait(1)


def _stop_compose_children() -> None:
    """`docker-compose up`, which the SDK started: a SIGTERM sent to this process alone does not reach it."""
    import psutil

    composes = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "compose" in " ".join(child.cmdline()):
                child.terminate()
                composes.append(child)
        except psutil.ZombieProcess:  # it exited when its containers went: reap it
            composes.append(child)
        except psutil.Error:
            continue
    psutil.wait_procs(composes, timeout=10)  # reaped, not left as zombies


def _fit(job, inputs: dict[str, str], job_name: str) -> BaseException | None:
    try:
        job.fit(inputs or None, job_name=job_name, wait=True, logs=True)
    except BaseException as error:  # noqa: BLE001 - the caller decides, knowing whether a signal came
        return error
    return None


def train_local(
    settings: Settings, image_uri: str, channels: dict[str, Path], job_name: str, script: ScriptMode | None = None
) -> JobResult:
    """Run the real image through SageMaker local mode; artifacts land in runs/<job>/, everything the job
    printed in runs/<job>/job.log.

    A job completes as on SageMaker: the container exited 0 and /opt/ml/model was saved (metrics.json is
    optional). MAX_RUN stops it; Ctrl-C, SIGTERM and SIGHUP stop it too and leave runs/<job>/INTERRUPTED.
    Afterwards, whatever happened, the containers and `docker-compose` are stopped and removed and the SDK's
    scratch folder (compose file, config copies) is deleted."""
    run_dir = settings.paths.run(job_name)
    scratch = run_dir / "container"
    scratch.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "job.log"
    started = time.perf_counter()
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
    sdk_ready = time.perf_counter()
    try:
        with interruptible() as received, _MaxRunWatchdog(settings.max_run, scratch) as watchdog, _logged_to(log_path):
            failure = _fit(job, inputs, job_name)
        fitted = time.perf_counter()
        # The SDK swallows a signal's exception or turns it into other errors in its clean-up: the list says.
        if received:
            why = f"interrupted ({interrupts.NAMES[received[0]]})"
            (run_dir / "INTERRUPTED").write_text(f"{why} before the job finished: nothing here is a result\n")
            raise Interrupted(why, received[0])
        if watchdog.fired.is_set():
            raise TrainingFailed(
                f"local training job {job_name} stopped: MAX_RUN={settings.max_run} s reached (raise MAX_RUN in .env "
                f"if the job needs longer; its log: {log_path})",
                status=STOPPED_MAX_RUN,
                reason=f"MaxRuntimeExceeded: MAX_RUN={settings.max_run} s",
                log_path=str(log_path),
            )
        if isinstance(failure, RuntimeError):  # the SDK's "Failed to run: [docker compose ...]"
            found = _local_failure(run_dir)
            reason = found.line or str(failure).splitlines()[0][:300]
            raise TrainingFailed(
                f"local training job {job_name} failed: {reason} (log: {log_path})",
                reason=reason,
                exit_code=found.exit_code,
                stderr_tail=found.tail,
                log_path=str(log_path),
            )
        if failure is not None:
            raise failure
    finally:
        _stop_compose_children()
        local_containers.remove(scratch)
        shutil.rmtree(scratch, ignore_errors=True)
    artifact = Path(job.model_data.removeprefix("file://"))
    if not saved_files(artifact):
        raise TrainingFailed(
            f"local training job {job_name} exited 0 but {artifact} is missing or empty (hint: {EMPTY_MODEL_HINT}; "
            f"log: {log_path})",
            reason=f"no model saved: {EMPTY_MODEL_HINT}",
            log_path=str(log_path),
        )
    saved = read_metrics_json(artifact)
    definitions = script.metric_definitions if script else metrics.default_definitions()
    with log_path.open(encoding="utf-8", errors="replace") as log:
        found = {**metrics.from_lines(log, definitions), **saved.get("metrics", {})}
    steps = {
        "SageMaker SDK (import, local session)": sdk_ready - started,
        "local-mode job (docker-compose, container)": fitted - sdk_ready,
        "outputs (containers removed, model, metrics)": time.perf_counter() - fitted,
    }
    return JobResult(
        str(artifact),
        found,
        saved.get("training_seconds"),
        channels=inputs,
        log_path=str(log_path),
        steps={step: round(seconds, 2) for step, seconds in steps.items()},
    )


def saved_files(artifact: Path) -> list[str]:
    """The files in model.tar.gz: none means /opt/ml/model was left empty, i.e. the program saved no model."""
    try:
        with tarfile.open(artifact) as archive:
            return [member.name for member in archive.getmembers() if member.isfile()]
    except (OSError, tarfile.TarError):
        return []


def read_metrics_json(artifact: Path) -> dict:
    """metrics.json from model.tar.gz when the program saved one ({} when not: it is optional)."""
    try:
        with tarfile.open(artifact) as archive:
            member = archive.extractfile("metrics.json")
            saved = json.load(member) if member else {}
    except (KeyError, tarfile.TarError, OSError, ValueError):
        return {}
    if not isinstance(saved, dict) or not isinstance(saved.get("metrics", {}), dict):
        return {}
    numeric = {
        k: v for k, v in saved.get("metrics", {}).items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    return {**saved, "metrics": numeric}


# ---- on SageMaker -------------------------------------------------------------------------------------
EMPTY_MODEL_HINT = "empty /opt/ml/model: the training program must save its model to /opt/ml/model before it exits"
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
    except ClientError as error:
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
    except ClientError as error:
        raise aws.explain(error, f"following training job {job_name}") from None


def stop(boto_session: boto3.Session, job_name: str, why: str, signum: int = 2) -> None:
    """StopTrainingJob, said as it is done; raises Interrupted with the status the run record keeps."""
    name = interrupts.NAMES.get(signum, why)
    print(f"\n{why}: stopping training job {job_name} (sagemaker:StopTrainingJob)", flush=True)
    try:
        aws.client(boto_session, "sagemaker").stop_training_job(TrainingJobName=job_name)
    except (ClientError, BotoCoreError) as error:
        if aws.error_code(error) == "ValidationException":  # never created, or already ended
            raise Interrupted(f"{why}; no running job {job_name} to stop ({aws.error_code(error)})", signum) from None
        raise Interrupted(
            f"{why}; StopTrainingJob failed ({aws.error_code(error)}): stop {job_name} in the console or with "
            f"`aws sagemaker stop-training-job --training-job-name {job_name}`",
            signum,
        ) from None
    raise Interrupted(f"stopped ({name}): StopTrainingJob sent", signum)


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
    except (ClientError, BotoCoreError):
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
    except (ClientError, BotoCoreError):
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
