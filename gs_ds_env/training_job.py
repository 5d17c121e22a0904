"""The training job: one `sagemaker.estimator.Estimator`, run in local mode (Docker) or on SageMaker."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .settings import Settings
from .sm import SDK_CONFIG, sagemaker

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
    job_name: str
    model_artifact: str
    metrics: dict[str, float]
    channels: dict[str, str]
    hyperparameters: dict[str, str]
    extra: dict = field(default_factory=dict)


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
    run_dir = settings.runs_dir / job_name
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
    return JobResult(
        job_name,
        str(artifact),
        metrics["metrics"],
        inputs,
        script.hyperparameters if script else settings.hyperparameters,
        extra={"training_seconds": metrics.get("training_seconds")},
    )


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
