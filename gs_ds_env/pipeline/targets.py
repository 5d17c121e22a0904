"""Where a pipeline runs, one object per target: here, each step in a container in order (the SDK's
LocalPipelineSession: no account, no step cache, no model registry), or on SageMaker Pipelines. run.py asks the
target for its session, image, execution and registration; it never asks which target it has."""

from __future__ import annotations

import json
from pathlib import Path

from gs_ds_env import aws, image
from gs_ds_env.pipeline import local, record, registry, remote
from gs_ds_env.pipeline.context import PipelineContext, Registration
from gs_ds_env.sdk import LOCAL_ROLE
from gs_ds_env.settings import ConfigError, Settings


def _stopped(entry: record.PipelineRecord, interrupted: KeyboardInterrupt) -> None:
    entry.status, entry.failure = "Stopped", getattr(interrupted, "status", "interrupted")


class LocalPipelines:
    counts_predictions = True  # the transform's input and output are files here
    detachable = False  # it runs here while the caller waits

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def context(self, name: str, image_uri: str, run_dir: Path | None = None, planned: bool = False):
        base = run_dir or self.settings.runs_dir / "<execution>"
        session = local.session(self.settings, base / "container")
        return PipelineContext(self.settings, name, session, image_uri, LOCAL_ROLE, True, local_base=base / "steps")

    def planned_image(self) -> str:
        return image.build(self.settings, dry_run=True).uri

    def image(self, run_dir: Path) -> str:
        (run_dir / "container").mkdir(parents=True, exist_ok=True)
        return image.build(self.settings).uri

    def plan_lines(self, ctx: PipelineContext) -> list[str]:
        return [
            f"the theme image {ctx.image_uri} (built here); every step runs in it",
            "the SDK's LocalPipelineSession runs each step in a container here, in order; no step cache (every step "
            "runs); no model registry (a version is recorded under runs/model-registry/)",
        ]

    def execute(self, pipeline, values: dict, run_dir: Path, entry: record.PipelineRecord, ctx, detach: bool):
        """Run it while the caller waits; fills the entry's execution, status and steps. Returns None (never left
        running)."""
        try:
            execution = local.execute(self.settings, pipeline, values, run_dir / "container", entry.command)
        except KeyboardInterrupt as interrupted:
            _stopped(entry, interrupted)
            record.write(run_dir, entry)
            raise
        described = execution.describe()
        entry.execution, entry.status = execution.pipeline_execution_name, described["PipelineExecutionStatus"]
        entry.failure = described.get("FailureReason")
        entry.steps = local.step_facts(execution)
        return None

    def read_json(self, uri: str) -> dict:
        path = Path(uri.removeprefix("file://"))
        return json.loads(path.read_text()) if path.is_file() else {}

    def register(self, wanted: Registration, entry: record.PipelineRecord, run_dir: Path) -> None:
        """Local mode has no model registry: the version is recorded under runs/model-registry/."""
        model = Path(entry.steps[wanted.train_step]["outputs"]["model"].removeprefix("file://"))
        metrics = entry.evaluation.get(wanted.property_file, {})
        version = registry.LocalRegistry(self.settings).register(wanted.group, model, metrics, run_dir.name)
        entry.registered = {"group": version.group, "version": version.version, "status": version.status}
        entry.notes.append(
            "Local mode has no model registry: the version is recorded in runs/model-registry/ "
            f"(`inv model.list`, `inv model.approve {version.version}`)."
        )

    def listing(self) -> str:
        return record.listing(self.settings)

    def closing_notes(self) -> list[str]:
        return ["Local mode has no step cache: every step ran (SageMaker skips unchanged cached steps)."]


class SageMakerPipelines:
    counts_predictions = False  # the predictions stay in S3; the step's status says the transform finished
    detachable = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.boto_session = aws.session(settings)

    def context(self, name: str, image_uri: str, run_dir: Path | None = None, planned: bool = False):
        s = self.settings
        return PipelineContext(
            s, name, remote.session(s, self.boto_session), image_uri, s.sagemaker_role_arn, False,
            upload=remote.uploader(s, self.boto_session, planned),
        )  # fmt: skip

    def planned_image(self) -> str:
        from gs_ds_env.aws import iam

        return image.push_plan(self.settings, iam.account_of(self.settings.sagemaker_role_arn)).image_uri

    def image(self, run_dir: Path) -> str:
        return image.push(self.settings, aws.account_id(self.boto_session)).uri

    def plan_lines(self, ctx: PipelineContext) -> list[str]:
        s = self.settings
        return [
            f"the theme image {ctx.image_uri} (built and pushed to ECR); every step runs in it",
            f"code and local inputs to s3://{s.s3_bucket}/{s.s3_prefix}/pipeline-code|pipeline-input/<name>/<digest>/ "
            f"(content-addressed), outputs to s3://{s.s3_bucket}/{s.s3_prefix}/pipelines/{ctx.name}/<execution id>/"
            "<step>/<output>/",
            f"sagemaker:CreatePipeline or UpdatePipeline {ctx.name} (role {s.sagemaker_role_arn}, tagged), "
            "StartPipelineExecution; steps followed until it ends (Ctrl-C: StopPipelineExecution); cached steps "
            "(inputs unchanged within 30 days) are not run again",
        ]

    def execute(self, pipeline, values: dict, run_dir: Path, entry: record.PipelineRecord, ctx, detach: bool):
        """Start it and follow it to its end (fills the entry's execution, status and steps), or with `detach`
        record it as left running and return its run.json."""
        execution = remote.start(self.settings, pipeline, values, [r.group for r in ctx.registrations])
        entry.execution, entry.console_url = execution.arn, remote.console_url(self.settings, ctx.name)
        if detach:
            entry.status = "in progress (detached)"
            run_json, _ = record.write(run_dir, entry)
            print(f"pipeline {ctx.name} started and left running (--detach): {execution.arn}\n"
                  f"  follow it: {entry.console_url}; see it: inv pipeline.list", flush=True)  # fmt: skip
            return run_json
        try:
            described = remote.follow(self.boto_session, execution, ctx.name)
        except KeyboardInterrupt as interrupted:
            _stopped(entry, interrupted)
            entry.steps = remote.step_facts(self.boto_session, execution.arn)
            record.write(run_dir, entry)
            raise
        entry.status, entry.failure = described["PipelineExecutionStatus"], described.get("FailureReason")
        entry.steps = remote.step_facts(self.boto_session, execution.arn)
        return None

    def read_json(self, uri: str) -> dict:
        return remote.read_json(self.boto_session, uri)

    def register(self, wanted: Registration, entry: record.PipelineRecord, run_dir: Path) -> None:
        """The RegisterModel step registered it: the version's number and status, read back."""
        arns = (s["metadata"]["RegisterModel"]["Arn"] for s in entry.steps.values() if "RegisterModel" in s["metadata"])
        arn = next(arns, None)
        if arn:
            described = aws.client(self.boto_session, "sagemaker").describe_model_package(ModelPackageName=arn)
            entry.registered = {
                "group": wanted.group, "version": described.get("ModelPackageVersion"),
                "status": described.get("ModelApprovalStatus"), "arn": arn,
            }  # fmt: skip

    def listing(self) -> str:
        return record.table(remote.listing(self.settings, self.boto_session))

    def closing_notes(self) -> list[str]:
        return []


TARGETS = {"local": LocalPipelines, "sagemaker": SageMakerPipelines}


def for_settings(settings: Settings) -> LocalPipelines | SageMakerPipelines:
    return TARGETS[settings.target](settings)


def check_detach(settings: Settings, detach: bool) -> None:
    if detach and not TARGETS[settings.target].detachable:
        raise ConfigError("--detach is for TARGET=sagemaker: a local pipeline runs here while you wait")
