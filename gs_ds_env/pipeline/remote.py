"""A pipeline on SageMaker Pipelines: the definition upserted with the execution role and the project's tags, an
execution started and followed (a line per step as its status changes, the elapsed time), Ctrl-C ->
StopPipelineExecution; its schedule (the SDK's PipelineSchedule: an EventBridge Scheduler schedule, its own role);
the list of this project's pipelines with their last execution and schedule; delete (the schedule, then the
pipeline; its past executions' records and outputs stay)."""

from __future__ import annotations

import time
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from gs_ds_env import aws
from gs_ds_env.data import s3_data
from gs_ds_env.interrupts import Interrupted, interruptible
from gs_ds_env.pipeline.definition import PipelineError
from gs_ds_env.sdk import SDK_CONFIG, sagemaker
from gs_ds_env.settings import Settings

POLL_SECONDS = 15
ENDED = ("Succeeded", "Failed", "Stopped")


def session(settings: Settings, boto_session):
    sagemaker()
    from sagemaker.workflow.pipeline_context import PipelineSession

    return PipelineSession(
        boto_session=boto_session, sagemaker_client=aws.client(boto_session, "sagemaker"),
        default_bucket=settings.s3_bucket, sagemaker_config=SDK_CONFIG,
    )  # fmt: skip


def uploader(settings: Settings, boto_session, planned: bool):
    """(area, local path) -> the s3:// prefix holding it, content-addressed (a dry run: where it would go)."""

    def upload(area: str, path: Path) -> str:
        if planned:
            return s3_data.planned_channel_uri(settings, path.stem or "input", str(path), area)
        s3 = aws.client(boto_session, "s3")
        return s3_data.upload_channels(settings, s3, {path.stem or "input": str(path)}, area=area).channels[
            path.stem or "input"
        ]

    return upload


def tags(settings: Settings) -> list[dict]:
    return [{"Key": k, "Value": v} for k, v in {**settings.tags, "gs-ds-env:pipeline": "true"}.items()]


def console_url(settings: Settings, name: str) -> str:
    region = settings.aws_region
    return f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/pipelines/{name}"


def ensure_group(settings: Settings, client, group: str) -> None:
    """The model package group a RegisterModel step registers into, made (tagged) before the first execution."""
    try:
        client.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as error:
        if aws.error_code(error) not in ("ValidationException", "ResourceNotFound"):
            raise
        client.create_model_package_group(
            ModelPackageGroupName=group, ModelPackageGroupDescription=f"models registered by pipeline {group}",
            Tags=tags(settings),
        )  # fmt: skip
        print(f"[pipeline] model package group {group}: created", flush=True)


def start(settings: Settings, pipeline, parameters: dict, groups: list[str] = ()):
    """Upsert the definition (with the execution role, tagged) and start an execution."""
    try:
        client = pipeline.sagemaker_session.sagemaker_client
        for group in dict.fromkeys(groups):
            ensure_group(settings, client, group)
        pipeline.upsert(role_arn=settings.sagemaker_role_arn, tags=tags(settings))
        return pipeline.start(parameters=parameters)
    except (ClientError, BotoCoreError) as error:
        raise aws.explain(error, f"starting pipeline {pipeline.name}") from None


def follow(boto_session, execution, name: str) -> dict:
    """Until the execution ends: its steps' status changes, each said once with the elapsed time. Ctrl-C, SIGTERM
    or SIGHUP stop it (StopPipelineExecution) and raise Interrupted."""
    client = aws.client(boto_session, "sagemaker")
    arn = execution.arn
    seen: dict[str, str] = {}
    started = time.monotonic()
    try:
        with interruptible():
            while True:
                described = client.describe_pipeline_execution(PipelineExecutionArn=arn)
                for step in reversed(_steps(client, arn)):
                    if seen.get(step["StepName"]) != step["StepStatus"]:
                        seen[step["StepName"]] = step["StepStatus"]
                        print(f"[pipeline] {step['StepName']}: {step['StepStatus']} "
                              f"({time.monotonic() - started:.0f} s)", flush=True)  # fmt: skip
                if described["PipelineExecutionStatus"] in ENDED:
                    return described
                time.sleep(POLL_SECONDS)
    except Interrupted as interrupted:
        print(f"\n{interrupted.status}: stopping pipeline execution of {name} (sagemaker:StopPipelineExecution)")
        try:
            client.stop_pipeline_execution(PipelineExecutionArn=arn)
        except (ClientError, BotoCoreError) as error:
            raise Interrupted(
                f"{interrupted.status}; StopPipelineExecution failed ({aws.error_code(error)}): stop it in the console",
                interrupted.signum,
            ) from None
        raise Interrupted(f"stopped ({interrupted.status}): StopPipelineExecution sent", interrupted.signum) from None


def _steps(client, arn: str) -> list[dict]:
    steps = []
    for page in client.get_paginator("list_pipeline_execution_steps").paginate(PipelineExecutionArn=arn):
        steps += page["PipelineExecutionSteps"]
    return steps


def step_facts(boto_session, arn: str) -> dict[str, dict]:
    client = aws.client(boto_session, "sagemaker")
    facts = {}
    for step in _steps(client, arn):
        started, ended = step.get("StartTime"), step.get("EndTime")
        facts[step["StepName"]] = {
            "status": step["StepStatus"],
            "seconds": round((ended - started).total_seconds(), 1) if started and ended else None,
            "failure": step.get("FailureReason"),
            "metadata": {k: v for k, v in step.get("Metadata", {}).items()},
            "outputs": _outputs(client, step.get("Metadata", {})),
        }
    return facts


def _outputs(client, metadata: dict) -> dict[str, str]:
    from gs_ds_env.pipeline.local import outputs_of

    try:
        if "ProcessingJob" in metadata:
            name = metadata["ProcessingJob"]["Arn"].rsplit("/", 1)[-1]
            return outputs_of(client.describe_processing_job(ProcessingJobName=name))
        if "TrainingJob" in metadata:
            name = metadata["TrainingJob"]["Arn"].rsplit("/", 1)[-1]
            return outputs_of(client.describe_training_job(TrainingJobName=name))
    except (ClientError, BotoCoreError):
        return {}
    return {}


def read_json(boto_session, uri: str) -> dict:
    import json

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        body = aws.client(boto_session, "s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return json.loads(body)
    except (ClientError, BotoCoreError, ValueError):
        return {}


# ---- schedule, list, delete -------------------------------------------------------------------------------------
def schedule_name(name: str) -> str:
    return f"{name}-schedule"[:64]


def cron_fields(cron: str) -> str:
    """The six fields of an EventBridge cron expression, given bare or as cron(...); one line when it is not one."""
    inner = cron.strip()
    inner = inner[5:-1].strip() if inner.startswith("cron(") and inner.endswith(")") else inner
    if len(inner.split()) != 6:
        raise PipelineError(
            f"--cron {cron!r} is not an EventBridge cron expression: six fields, minutes hours day-of-month "
            "month day-of-week year, e.g. --cron '0 6 * * ? *' (06:00 UTC every day)"
        )
    return inner


def schedule(settings: Settings, name: str, cron: str | None, off: bool) -> str:
    """Put (or remove, `off`) the pipeline's EventBridge Scheduler schedule through the SDK's PipelineSchedule."""
    inner = None if off else cron_fields(cron)
    expression = f"cron({inner})"
    sagemaker()
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.triggers import PipelineSchedule

    boto_session = aws.session(settings)
    pipeline = Pipeline(name=name, sagemaker_session=session(settings, boto_session))
    try:
        if off:
            pipeline.delete_triggers(trigger_names=[schedule_name(name)])
            return f"schedule {schedule_name(name)} removed: {name} runs only when started"
        arns = pipeline.put_triggers(
            triggers=[PipelineSchedule(name=schedule_name(name), cron=inner)], role_arn=settings.scheduler_role_arn
        )
    except RuntimeError as error:  # the SDK's "Cannot create triggers for pipeline ... that does not exist"
        raise PipelineError(f"{error}: run `inv pipeline.run` with TARGET=sagemaker once first") from None
    except (ClientError, BotoCoreError) as error:
        raise aws.explain(error, f"scheduling pipeline {name}") from None
    return f"schedule {schedule_name(name)} ({expression}): {arns[0]}"


def listing(settings: Settings, boto_session) -> list[dict]:
    client = aws.client(boto_session, "sagemaker")
    scheduler = aws.client(boto_session, "scheduler")
    rows = []
    try:
        pipelines = [
            p for page in client.get_paginator("list_pipelines").paginate(PipelineNamePrefix=settings.base_job_name)
            for p in page["PipelineSummaries"]
        ]  # fmt: skip
        schedules = {
            s["Name"]: s for page in scheduler.get_paginator("list_schedules").paginate(NamePrefix=settings.base_job_name)
            for s in page["Schedules"]
        }  # fmt: skip
        for summary in pipelines:
            name = summary["PipelineName"]
            executions = client.list_pipeline_executions(PipelineName=name, SortBy="CreationTime", SortOrder="Descending",
                                                         MaxResults=1).get("PipelineExecutionSummaries", [])  # fmt: skip
            schedule = schedules.get(schedule_name(name))
            expression = ""
            if schedule:
                expression = scheduler.get_schedule(Name=schedule["Name"]).get("ScheduleExpression", "")
            rows.append({
                "pipeline": name,
                "last execution": executions[0]["PipelineExecutionStatus"] if executions else "never run",
                "started": str(executions[0].get("StartTime", "")) if executions else "",
                "schedule": f"{expression} ({schedule.get('State', '')})" if schedule else "none",
            })  # fmt: skip
    except (ClientError, BotoCoreError) as error:
        raise aws.explain(error, "listing pipelines") from None
    return rows


def delete_plan(settings: Settings, name: str) -> list[str]:
    boto_session = aws.session(settings)
    client = aws.client(boto_session, "sagemaker")
    try:
        client.describe_pipeline(PipelineName=name)
    except ClientError as error:
        if aws.error_code(error) in ("ResourceNotFound", "ValidationException"):
            raise PipelineError(
                f"no pipeline {name} in {settings.aws_region}: `inv pipeline.list` shows them"
            ) from None
        raise aws.explain(error, f"reading pipeline {name}") from None
    steps = []
    try:
        aws.client(boto_session, "scheduler").get_schedule(Name=schedule_name(name))
        steps.append(f"delete schedule {schedule_name(name)} (scheduler:DeleteSchedule)")
    except ClientError:
        pass
    steps.append(f"delete pipeline {name} (sagemaker:DeletePipeline); its executions' records in runs/ and outputs "
                 "in S3 stay")  # fmt: skip
    return steps


def delete(settings: Settings, name: str) -> None:
    boto_session = aws.session(settings)
    try:
        try:
            aws.client(boto_session, "scheduler").delete_schedule(Name=schedule_name(name))
            print(f"deleted schedule {schedule_name(name)}", flush=True)
        except ClientError as error:
            if aws.error_code(error) != "ResourceNotFoundException":
                raise
        aws.client(boto_session, "sagemaker").delete_pipeline(PipelineName=name)
        print(f"deleted pipeline {name}", flush=True)
    except (ClientError, BotoCoreError) as error:
        raise aws.explain(error, f"deleting pipeline {name}") from None
