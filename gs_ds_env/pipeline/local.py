"""A pipeline on this machine: the SDK's LocalPipelineSession runs each step in the theme image's container (the
SDK's local mode: no account, no S3), one after the other, as its dependencies allow. What differs from SageMaker,
and what is done about it:

- every path is a file:// folder under runs/<execution>/; the SDK reads a step's property file (evaluation.json,
  for a condition) from S3 only: here it reads it from its folder;
- there is no step cache: every step runs every time (SageMaker skips a step whose inputs did not change);
- there is no model registry: a RegisterModel step is left out and the runner records the version under
  runs/model-registry/ (registry.py), where `inv model.list` finds it;
- a step's containers carry this command's labels and are removed when the execution ends, whatever its end;
  a step is announced when it starts and when it ends, with its time.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from gs_ds_env.job import local_containers
from gs_ds_env.ops import leftovers
from gs_ds_env.sdk import SDK_CONFIG, sagemaker
from gs_ds_env.settings import Settings

LOCAL_FILES = "<local file>"  # the "bucket" of a file:// URI, for the SDK's S3 reader


def session(settings: Settings, container_root: Path):
    """A LocalPipelineSession that reads file:// property files, its containers labelled as this command's."""
    sagemaker()
    from sagemaker.workflow.pipeline_context import LocalPipelineSession

    from gs_ds_env.job.local_job import session_without_credentials

    class FilePipelineSession(LocalPipelineSession):
        def read_s3_file(self, bucket, key_prefix):
            if bucket == LOCAL_FILES:
                return Path("/" + key_prefix).read_text()
            return super().read_s3_file(bucket, key_prefix)

    local = FilePipelineSession(boto_session=session_without_credentials(settings.aws_region))
    local.sagemaker_config = SDK_CONFIG
    local.config = {
        "local": {
            "local_code": True,
            "container_root": str(container_root),
            "container_config": {"labels": leftovers.labels(settings, "pipeline")},
        }
    }
    return local


@contextlib.contextmanager
def _as_this_project_runs_it(progress):
    """file:// URIs where the SDK's local executor expects s3:// ones, and a line per step started and ended."""
    from sagemaker.local import pipeline as local_pipeline

    original_parse, original_step = local_pipeline.parse_s3_url, local_pipeline.LocalPipelineExecutor._execute_step

    def parse(url):
        if str(url).startswith("file://"):
            return LOCAL_FILES, str(url).removeprefix("file://").lstrip("/")
        return original_parse(url)

    def execute_step(self, step):
        progress(step.name, step.step_type.value, None)
        started = time.monotonic()
        try:
            return original_step(self, step)
        finally:
            outcome = self.execution.step_execution.get(step.name)
            progress(step.name, outcome.status if outcome else "Failed", time.monotonic() - started)

    local_pipeline.parse_s3_url, local_pipeline.LocalPipelineExecutor._execute_step = parse, execute_step
    try:
        yield
    finally:
        local_pipeline.parse_s3_url, local_pipeline.LocalPipelineExecutor._execute_step = original_parse, original_step


def execute(settings: Settings, pipeline, parameters: dict, container_root: Path, command: str):
    """Run the pipeline here; returns the SDK's local execution (its steps' properties and list_steps)."""
    from gs_ds_env.interrupts import interruptible
    from gs_ds_env.job.local_job import stop_compose_children

    leftovers.claim(container_root, settings, "pipeline", job=pipeline.name, command=command)

    def progress(step: str, status: str, seconds: float | None) -> None:
        if seconds is None:
            print(f"[pipeline] {step} ({status}): started", flush=True)
        else:
            print(f"[pipeline] {step}: {status} after {seconds:.1f} s", flush=True)

    try:
        with interruptible(), _as_this_project_runs_it(progress):
            pipeline.upsert(role_arn="arn:aws:iam::000000000000:role/local-mode-unused")
            return pipeline.start(parameters=parameters)
    finally:
        stop_compose_children()
        local_containers.remove(container_root)


def step_facts(execution) -> dict[str, dict]:
    """Each step's status, time, failure and what it made, from the local execution."""
    facts = {}
    for step in execution.list_steps()["PipelineExecutionSteps"]:
        properties = execution.step_execution[step["StepName"]].properties or {}
        started, ended = step.get("StartTime"), step.get("EndTime")
        facts[step["StepName"]] = {
            "status": step["StepStatus"],
            "seconds": round(ended - started, 1) if started and ended else None,
            "failure": step.get("FailureReason"),
            "metadata": step.get("Metadata", {}),
            "outputs": outputs_of(properties),
            "transform_input": properties.get("TransformInput", {})
            .get("DataSource", {})
            .get("S3DataSource", {})
            .get("S3Uri"),
        }
    return facts


def outputs_of(properties: dict) -> dict[str, str]:
    """A step's outputs as its description names them: processing outputs, the model, the transform's output."""
    outputs = properties.get("ProcessingOutputConfig", {}).get("Outputs", [])
    if isinstance(outputs, dict):  # the SDK's local mode keys them by name; SageMaker lists them
        outputs = list(outputs.values())
    found = {item["OutputName"]: item["S3Output"]["S3Uri"] for item in outputs if isinstance(item, dict)}
    if properties.get("ModelArtifacts", {}).get("S3ModelArtifacts"):
        found["model"] = properties["ModelArtifacts"]["S3ModelArtifacts"]
    if properties.get("TransformOutput", {}).get("S3OutputPath"):
        found["predictions"] = properties["TransformOutput"]["S3OutputPath"]
    return found
