"""A processing job, either target, through the SDK's `Processor` (the theme image, `python3` on the script): in
local mode on this machine (runs/<job>/output/<name>/, job.log, MAX_RUN and signals as a local training job has
them, nothing left running), or on SageMaker (started, followed with its status and elapsed time, Ctrl-C ->
StopProcessingJob, --detach; its outputs listed in S3). The result is the one JobResult a training job has, so the
run record is the same."""

from __future__ import annotations

import re
import time
from pathlib import Path

from gs_ds_env import aws
from gs_ds_env.interrupts import Interrupted, interruptible
from gs_ds_env.job import metrics
from gs_ds_env.job.processing import CODE_INPUT, CONTAINER_INPUT, ProcessingSpec
from gs_ds_env.job.training_job import FAILED, JobResult, TrainingFailed, explain
from gs_ds_env.sdk import LOCAL_ROLE, sagemaker
from gs_ds_env.settings import Settings

TAIL_LINES = 20
EXITED = re.compile(r"exited with code (\d+)")


def processor_class():
    """The SDK's Processor, but in local mode a `file://` input or output stays where it is (the local engine mounts
    it; the SDK's Processor would upload it to the session's default bucket, which local mode has none of)."""
    sagemaker()
    from sagemaker.processing import Processor

    class LocalFilesProcessor(Processor):
        def _normalize_inputs(self, inputs=None, kms_key=None):
            if not self.sagemaker_session.local_mode:
                return super()._normalize_inputs(inputs, kms_key)
            return list(inputs or [])

        def _normalize_outputs(self, outputs=None):
            if not self.sagemaker_session.local_mode:
                return super()._normalize_outputs(outputs)
            return list(outputs or [])

    return LocalFilesProcessor


def processor(settings: Settings, spec: ProcessingSpec, image_uri: str, session, *, local: bool, role: str, **extra):
    return processor_class()(
        role=role,
        image_uri=image_uri,
        instance_count=1 if local else settings.instance_count,
        instance_type="local" if local else settings.instance_type,
        entrypoint=spec.command,
        sagemaker_session=session,
        base_job_name=settings.base_job_name,
        max_runtime_in_seconds=None if local else settings.max_run,
        **extra,
    )


def sdk_inputs(spec: ProcessingSpec, code: str, sources: dict[str, str], *, local: bool) -> list:
    """The code and every data input, as ProcessingInputs (`sources`: each input's file:// or s3:// URI)."""
    from sagemaker.processing import ProcessingInput

    items = [ProcessingInput(source=code, destination=f"{CONTAINER_INPUT}/{CODE_INPUT}", input_name=CODE_INPUT)]
    for item in spec.inputs:
        distribution = "ShardedByS3Key" if item.shard and not local else "FullyReplicated"
        items.append(
            ProcessingInput(
                source=sources[item.name], destination=item.container_path, input_name=item.name,
                s3_data_distribution_type=distribution,
            )
        )  # fmt: skip
    return items


def sdk_outputs(spec: ProcessingSpec, destinations: dict[str, str]) -> list:
    from sagemaker.processing import ProcessingOutput

    return [
        ProcessingOutput(source=item.container_path, destination=destinations[item.name], output_name=item.name)
        for item in spec.outputs
    ]


def folder_sizes(folder: Path) -> dict:
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def _container_lines(log: Path) -> list[str]:
    """The last lines the script printed (local mode prefixes them `<container> | `; compose's own lines have none)."""
    lines = []
    for raw in log.read_text(errors="replace").splitlines():
        line = metrics.ANSI.sub("", raw).rstrip()
        if metrics.COMPOSE_PREFIX.match(line) and (text := metrics.COMPOSE_PREFIX.sub("", line, count=1)).strip():
            lines.append(text)
    return lines[-TAIL_LINES:]


def _exit_code(log: Path) -> int | None:
    found = EXITED.findall(metrics.ANSI.sub("", log.read_text(errors="replace")))
    return int(found[-1]) if found else None


def run_local(
    settings: Settings, image_uri: str, spec: ProcessingSpec, inputs: dict[str, Path], job_name: str
) -> JobResult:
    """The processing job in local mode: runs/<job>/output/<name>/ for each output, job.log for what it printed.
    A script that fails is a TrainingFailed with its last lines; MAX_RUN, Ctrl-C, SIGTERM and SIGHUP stop it."""
    from gs_ds_env.job.local_job import LocalModeJob

    local = LocalModeJob(settings, job_name, "process")
    run_dir, log_path = local.run_dir, local.log_path
    started = time.perf_counter()
    job = processor(settings, spec, image_uri, local.session(), local=True, role=LOCAL_ROLE)
    sources = {name: f"file://{path.resolve()}" for name, path in inputs.items()}
    destinations = {item.name: f"file://{(run_dir / 'output' / item.name).resolve()}" for item in spec.outputs}
    for item in spec.outputs:
        (run_dir / "output" / item.name).mkdir(parents=True, exist_ok=True)

    def failed(_: RuntimeError) -> TrainingFailed:  # the script exited non-zero: its last lines say why
        tail, code = _container_lines(log_path), _exit_code(log_path)
        said = tail[-1].strip() if tail else "the script printed nothing"
        reason = explain(f"{said} (exit code {code})" if code is not None else said)
        return TrainingFailed(
            f"local processing job {job_name} failed: {reason} (log: {log_path})",
            status=FAILED, reason=reason, stderr_tail=tail, exit_code=code, log_path=str(log_path),
        )  # fmt: skip

    local.run(
        lambda: job.run(
            inputs=sdk_inputs(spec, f"file://{spec.script.code_dir.resolve()}", sources, local=True),
            outputs=sdk_outputs(spec, destinations),
            arguments=spec.arguments or None,
            job_name=job_name,
            wait=True,
            logs=True,
        ),  # fmt: skip
        f"local processing job {job_name}",
        failed,
    )
    finished = local.finished
    outputs = {item.name: {"path": str(run_dir / "output" / item.name), **folder_sizes(run_dir / "output" / item.name)}
               for item in spec.outputs}  # fmt: skip
    with log_path.open(encoding="utf-8", errors="replace") as log:
        printed = metrics.from_lines(log, [])
    return JobResult(
        "", printed, None, log_path=str(log_path), channels=sources,
        steps={"local-mode job (docker-compose, container)": round(finished - started, 2)},
        outputs=outputs,
    )  # fmt: skip


class SageMakerProcessing:
    """A processing job on SageMaker: started (tagged, bounded by MAX_RUN), followed until it ends with its status
    and elapsed time (Ctrl-C sends StopProcessingJob), or left running with --detach; its outputs listed in S3."""

    def __init__(self, settings: Settings, boto_session, job_name: str) -> None:
        self.settings, self.boto_session, self.job_name = settings, boto_session, job_name
        self.client = aws.client(boto_session, "sagemaker")

    def start(
        self, spec: ProcessingSpec, image_uri: str, code: str, sources: dict[str, str], destinations: dict[str, str]
    ) -> None:
        from sagemaker.session import Session

        from gs_ds_env.sdk import SDK_CONFIG

        session = Session(boto_session=self.boto_session, sagemaker_config=SDK_CONFIG)
        tags = [{"Key": k, "Value": v} for k, v in self.settings.tags.items()] or None
        job = processor(self.settings, spec, image_uri, session, local=False, role=self.settings.sagemaker_role_arn,
                        tags=tags)  # fmt: skip
        job.run(
            inputs=sdk_inputs(spec, code, sources, local=False), outputs=sdk_outputs(spec, destinations),
            arguments=spec.arguments or None, job_name=self.job_name, wait=False, logs=False,
        )  # fmt: skip

    def wait(self) -> dict:
        """Follow the job's CloudWatch log until it ends (the SDK's logs_for_processing_job), its status and elapsed
        time said at the end; Ctrl-C, SIGTERM or SIGHUP send StopProcessingJob and raise Interrupted."""
        from gs_ds_env.job.sagemaker_job import sdk_session, stop

        started = time.monotonic()
        print(
            f"following processing job {self.job_name} (its log: {aws.PROCESSING_LOG_GROUP}; Ctrl-C stops it)",
            flush=True,
        )
        try:
            with interruptible():
                sdk_session(self.boto_session).logs_for_processing_job(self.job_name, wait=True)
        except Interrupted as interrupted:
            stop(self.boto_session, self.job_name, interrupted.status, interrupted.signum, kind="processing")
        except sagemaker().exceptions.UnexpectedStatusException:
            pass  # it failed or was stopped: its description below says why
        except Exception as error:  # noqa: BLE001 - following the log is a convenience: the status below decides
            why = (
                aws.error_code(error)
                if isinstance(error, (aws.ClientError, aws.BotoCoreError))
                else type(error).__name__
            )
            print(f"note: the job's log cannot be followed ({why}); asking for its status", flush=True)
        described = self.client.describe_processing_job(ProcessingJobName=self.job_name)
        elapsed = time.monotonic() - started
        print(f"processing job {self.job_name}: {described['ProcessingJobStatus']} after {elapsed:.0f} s", flush=True)
        return described

    def result(self, described: dict, sources: dict[str, str]) -> JobResult:
        status = described["ProcessingJobStatus"]
        if status != "Completed":
            reason = explain(described.get("FailureReason") or described.get("ExitMessage") or status)
            raise TrainingFailed(
                f"processing job {self.job_name} {status}: {reason}", status=status.lower(), reason=reason
            )
        s3 = self.boto_session.client("s3")
        outputs = {}
        for item in described.get("ProcessingOutputConfig", {}).get("Outputs", []):
            uri = item["S3Output"]["S3Uri"]
            bucket, _, prefix = uri.removeprefix("s3://").partition("/")
            listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix.rstrip("/") + "/").get("Contents", [])
            outputs[item["OutputName"]] = {"uri": uri, "files": len(listed), "bytes": sum(o["Size"] for o in listed)}
        return JobResult("", {}, None, channels=sources, description=described, outputs=outputs)
