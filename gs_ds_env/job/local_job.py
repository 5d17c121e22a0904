"""A training job in SageMaker local mode: the real image on this machine through the SDK's LocalSession, its
output in runs/<job>/ (job.log, model.tar.gz, output.tar.gz), MAX_RUN and signals honoured, nothing left running."""

from __future__ import annotations

import contextlib
import io
import shutil
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gs_ds_env import aws, interrupts
from gs_ds_env.interrupts import Interrupted, interruptible
from gs_ds_env.job import local_containers, metrics
from gs_ds_env.job.script_mode import ScriptMode
from gs_ds_env.job.training_job import (
    EMPTY_MODEL_HINT,
    STOPPED_MAX_RUN,
    Failure,
    JobResult,
    TrainingFailed,
    estimator,
    explain,
    parse_failure,
    read_metrics_json,
    saved_files,
)
from gs_ds_env.ops import leftovers
from gs_ds_env.sdk import LOCAL_ROLE, SDK_CONFIG, sagemaker
from gs_ds_env.settings import Settings

if TYPE_CHECKING:
    pass


def session_without_credentials(region: str):
    """A boto3 session that finds no AWS credentials. Local mode with file:// channels needs none, and the SDK
    would otherwise copy the caller's keys into the container's environment and its docker-compose.yaml."""
    import boto3
    from botocore.credentials import CredentialResolver

    core = aws.core_session()
    core.register_component("credential_provider", CredentialResolver(providers=[]))
    return boto3.Session(botocore_session=core, region_name=region)


def local_session(settings: Settings, container_root: Path, kind: str = "train"):
    """A LocalSession whose containers carry this command's labels (the SDK's local.container_config): one left
    running by a killed command is found by them (ops/leftovers.py)."""
    sagemaker()
    from sagemaker.local import LocalSession

    session = LocalSession(boto_session=session_without_credentials(settings.aws_region), sagemaker_config=SDK_CONFIG)
    session.config = {
        "local": {
            "local_code": True,
            "container_root": str(container_root),
            "container_config": {"labels": leftovers.labels(settings, kind)},
        }
    }
    return session


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
        if "\n" in text:  # the SDK writes the job's lines unflushed: a pipe or a file sees each line as it comes
            self.terminal.flush()
        return len(text)

    def flush(self) -> None:
        self.terminal.flush()
        self.log.flush()


@contextlib.contextmanager
def logged_to(path: Path):
    import sys

    # Line-buffered: `tail -f runs/<job>/job.log` follows the job while it runs.
    with path.open("a", encoding="utf-8", errors="replace", buffering=1) as log:
        terminal = sys.stdout
        sys.stdout = _Tee(terminal, log)
        try:
            yield
        finally:
            sys.stdout = terminal


class MaxRunWatchdog:
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


def raise_if_stopped(received: list, watchdog: MaxRunWatchdog, settings: Settings, run_dir: Path, what: str,
                     log_path: Path) -> None:  # fmt: skip
    """After a local job: a signal that came (the SDK swallows its exception or turns it into other errors in its
    clean-up: the list says) is Interrupted, its run folder marked; MAX_RUN reached is TrainingFailed."""
    if received:
        why = f"interrupted ({interrupts.NAMES[received[0]]})"
        (run_dir / "INTERRUPTED").write_text(f"{why} before the job finished: nothing here is a result\n")
        raise Interrupted(why, received[0])
    if watchdog.fired.is_set():
        raise TrainingFailed(
            f"{what} stopped: MAX_RUN={settings.max_run} s reached (raise MAX_RUN in .env if the job needs longer; "
            f"its log: {log_path})",
            status=STOPPED_MAX_RUN,
            reason=f"MaxRuntimeExceeded: MAX_RUN={settings.max_run} s",
            log_path=str(log_path),
        )


def stop_compose_children() -> None:
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
    _, alive = psutil.wait_procs(composes, timeout=10)  # reaped, not left as zombies
    for child in alive:  # a busy machine: compose still stopping its containers, which are removed next anyway
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=5)


class LocalModeJob:
    """One SageMaker local-mode job on this machine: runs/<job>/ with job.log and the SDK's container root (claimed,
    so that what a killed command leaves is found), and `run`, which makes the SDK's blocking call under the signals,
    MAX_RUN and the log, then removes what the call started, whatever happened."""

    def __init__(self, settings: Settings, job_name: str, kind: str) -> None:
        from gs_ds_env.job.report import invoked_command

        self.settings, self.job_name, self.kind = settings, job_name, kind
        self.run_dir = settings.paths.run(job_name)
        self.scratch = self.run_dir / "container"
        self.scratch.mkdir(parents=True, exist_ok=True)
        leftovers.claim(self.scratch, settings, kind, job=job_name, command=invoked_command())
        self.log_path = self.run_dir / "job.log"
        self.finished = 0.0

    def session(self):
        return local_session(self.settings, self.scratch, kind=self.kind)

    def run(self, call: Callable[[], object], what: str, failed: Callable[[RuntimeError], TrainingFailed]) -> None:
        """`call` (the SDK's fit or run) to its end. A signal (the SDK swallows its exception or turns it into other
        errors in its clean-up: the list says) is Interrupted; MAX_RUN is TrainingFailed; the SDK's RuntimeError
        ("Failed to run: [docker compose ...]": the container exited non-zero) becomes `failed(error)`."""
        failure: BaseException | None = None
        try:
            with interruptible() as received, MaxRunWatchdog(self.settings.max_run, self.scratch) as watchdog, \
                    logged_to(self.log_path):  # fmt: skip
                try:
                    call()
                except BaseException as error:  # noqa: BLE001 - decided below, knowing whether a signal came
                    failure = error
            self.finished = time.perf_counter()
            raise_if_stopped(received, watchdog, self.settings, self.run_dir, what, self.log_path)
            if isinstance(failure, RuntimeError):
                raise failed(failure)
            if failure is not None:
                raise failure
        finally:
            stop_compose_children()
            local_containers.remove(self.scratch)
            shutil.rmtree(self.scratch, ignore_errors=True)


def train_local(
    settings: Settings, image_uri: str, channels: dict[str, Path], job_name: str, script: ScriptMode | None = None
) -> JobResult:
    """Run the real image through SageMaker local mode; artifacts land in runs/<job>/, everything the job
    printed in runs/<job>/job.log.

    A job completes as on SageMaker: the container exited 0 and /opt/ml/model was saved (metrics.json is
    optional). MAX_RUN stops it; Ctrl-C, SIGTERM and SIGHUP stop it too and leave runs/<job>/INTERRUPTED.
    Afterwards, whatever happened, the containers and `docker-compose` are stopped and removed and the SDK's
    scratch folder (compose file, config copies) is deleted."""
    local = LocalModeJob(settings, job_name, "train")
    run_dir, log_path = local.run_dir, local.log_path
    started = time.perf_counter()
    session = local.session()
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

    def failed(error: RuntimeError) -> TrainingFailed:
        found = _local_failure(run_dir)
        reason = explain(found.line or str(error).splitlines()[0][:300])
        return TrainingFailed(
            f"local training job {job_name} failed: {reason} (log: {log_path})",
            reason=reason, exit_code=found.exit_code, stderr_tail=found.tail, log_path=str(log_path),
        )  # fmt: skip

    local.run(
        lambda: job.fit(inputs or None, job_name=job_name, wait=True, logs=True),
        f"local training job {job_name}",
        failed,
    )
    fitted = local.finished
    artifact = Path(job.model_data.removeprefix("file://"))
    definitions = script.metric_definitions if script else metrics.default_definitions()
    found, training_seconds = _saved_model_and_metrics(
        artifact, log_path, definitions, f"local training job {job_name}"
    )
    steps = {
        "SageMaker SDK (import, local session)": sdk_ready - started,
        "local-mode job (docker-compose, container)": fitted - sdk_ready,
        "outputs (containers removed, model, metrics)": time.perf_counter() - fitted,
    }
    return JobResult(
        str(artifact),
        found,
        training_seconds,
        channels=inputs,
        log_path=str(log_path),
        steps={step: round(seconds, 2) for step, seconds in steps.items()},
    )


def _saved_model_and_metrics(artifact: Path, log_path: Path, definitions: list, what: str) -> tuple[dict, float | None]:
    """A job completes as on SageMaker when it saved a model; its metrics are the log's lines the definitions match,
    then what it wrote to metrics.json (optional), and the training seconds it wrote there."""
    if not saved_files(artifact):
        raise TrainingFailed(
            f"{what} exited 0 but {artifact} is missing or empty (hint: {EMPTY_MODEL_HINT}; log: {log_path})",
            reason=f"no model saved: {EMPTY_MODEL_HINT}",
            log_path=str(log_path),
        )
    saved = read_metrics_json(artifact)
    with log_path.open(encoding="utf-8", errors="replace") as log:
        return {**metrics.from_lines(log, definitions), **saved.get("metrics", {})}, saved.get("training_seconds")
