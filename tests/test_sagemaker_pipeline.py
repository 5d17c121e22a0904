"""Pipelines and the model registry on TARGET=sagemaker against real servers (moto_server, docker-registry): the
definition upserted with every step in the pushed theme image, executions started with their parameters, the
schedule created and removed (EventBridge Scheduler), list and delete leaving nothing; Ctrl-C sends
StopPipelineExecution; model versions listed with their metrics, approved, and `latest-approved` deployed. moto
ends every execution at once and lacks ListPipelineExecutionSteps and StopPipelineExecution: botocore handlers
answer those (and hold the execution running), as SageMaker would."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from aws_fakes import BUCKET, REGION, ROLE, TRUST_SAGEMAKER, aws, execution_role, inv, operations, sagemaker_env
from conftest import INV, one_line_refusal

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPOSITORY = "gs-ds-env-tabular-test"
PIPELINE = "gs-ds-env-titanic"
TRUST_SCHEDULER = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "scheduler.amazonaws.com"}}],
}


@pytest.fixture
def env(tmp_path, moto, registry, base_image, titanic_csv) -> dict[str, str]:
    execution_role(moto, "gs-ds-env-sagemaker", TRUST_SAGEMAKER)
    scheduler = execution_role(moto, "gs-ds-env-scheduler", TRUST_SCHEDULER)
    return sagemaker_env(tmp_path, moto, base_image, titanic_csv, ECR_REGISTRY=registry.host, ECR_REPOSITORY=REPOSITORY,
                         THEME="tabular", SCHEDULER_ROLE_ARN=scheduler, TAGS="owner=tests")  # fmt: skip


def images_in(definition: dict) -> set[str]:
    """Every image a step of the definition runs, whatever the step's kind."""
    found = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("ImageUri", "TrainingImage", "Image") and isinstance(value, str):
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(definition)
    return found


def test_a_pipeline_is_upserted_in_the_theme_image_started_scheduled_listed_and_deleted(project, moto, registry, env):
    moto.reset_recording()
    plan = inv(project, env, "pipeline.run", "titanic", "--dry-run")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert moto.calls() == []  # a plan calls nothing: uploads are planned from local digests
    assert f"sagemaker:CreatePipeline or UpdatePipeline {PIPELINE}" in plan.stdout

    first = inv(project, env, "pipeline.run", "titanic", "--detach")
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    assert "started and left running (--detach)" in first.stdout
    calls = moto.calls()
    (create,) = [c.body for c in calls if c.operation == "SageMaker.CreatePipeline"]
    definition = json.loads(create["PipelineDefinition"])
    content_tag = next(tag for tag in registry.tags(REPOSITORY) if tag.startswith("tabular_311-"))
    pushed = f"{registry.host}/{REPOSITORY}:{content_tag}"
    assert images_in(definition) == {pushed}  # kernel = image = every step's container
    steps = {s["Name"]: s for s in definition["Steps"]}
    assert list(steps) == ["prepare", "train", "evaluate", "auc-good-enough"]
    branch = {s["Name"]: s["Type"] for s in steps["auc-good-enough"]["Arguments"]["IfSteps"]}
    assert branch == {
        "register-RegisterModel": "RegisterModel",
        "predict-model-CreateModel": "Model",
        "predict": "Transform",
    }
    assert [s["Type"] for s in steps["auc-good-enough"]["Arguments"]["ElseSteps"]] == ["Fail"]
    assert create["RoleArn"] == ROLE and {"Key": "owner", "Value": "tests"} in create["Tags"]
    assert steps["prepare"]["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}
    code = {i["InputName"]: i["S3Input"]["S3Uri"] for i in steps["prepare"]["Arguments"]["ProcessingInputs"]}["code"]
    assert code.startswith(f"s3://{BUCKET}/team/titanic-run/pipeline-code/")
    raw = next(p for p in definition["Parameters"] if p["Name"] == "RawData")["DefaultValue"]
    assert raw.startswith(f"s3://{BUCKET}/team/titanic-run/pipeline-input/")
    assert "SageMaker.CreateModelPackageGroup" in operations(calls)
    (started,) = [c.body for c in calls if c.operation == "SageMaker.StartPipelineExecution"]
    assert started["PipelineName"] == PIPELINE

    # The same definition again: updated (the SDK's upsert: CreatePipeline refused as existing, then UpdatePipeline),
    # one pipeline still; its parameters sent as SageMaker takes them.
    moto.reset_recording()
    second = inv(project, env, "pipeline.run", "titanic", "--param", "AucThreshold=0.9", "--detach")
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    ops = operations(moto.calls())
    assert "SageMaker.UpdatePipeline" in ops
    assert [p["PipelineName"] for p in aws(moto, "sagemaker").list_pipelines()["PipelineSummaries"]] == [PIPELINE]
    (started,) = [c.body for c in moto.calls() if c.operation == "SageMaker.StartPipelineExecution"]
    assert started["PipelineParameters"] == [{"Name": "AucThreshold", "Value": "0.9"}]

    one_line_refusal(inv(project, env, "pipeline.schedule", "titanic", "--cron", "every day"), "six fields")
    scheduled = inv(project, env, "pipeline.schedule", "titanic", "--cron", "0 6 * * ? *")
    assert scheduled.returncode == 0, scheduled.stdout + scheduled.stderr
    scheduler = aws(moto, "scheduler")
    schedule = scheduler.get_schedule(Name=f"{PIPELINE}-schedule")
    pipeline_arn = aws(moto, "sagemaker").describe_pipeline(PipelineName=PIPELINE)["PipelineArn"]
    assert schedule["ScheduleExpression"] == "cron(0 6 * * ? *)" and schedule["Target"]["Arn"] == pipeline_arn
    assert schedule["Target"]["RoleArn"] == env["SCHEDULER_ROLE_ARN"]
    listed = inv(project, env, "pipeline.list")
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith(PIPELINE)]
    assert "Succeeded" in row and "cron(0 6 * * ? *)" in row

    dry = inv(project, env, "pipeline.delete", "titanic", "--dry-run")
    assert dry.returncode == 0 and f"would delete schedule {PIPELINE}-schedule" in dry.stdout, dry.stderr
    assert scheduler.list_schedules()["Schedules"]  # a dry run deletes nothing
    deleted = inv(project, env, "pipeline.delete", "titanic")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert aws(moto, "sagemaker").list_pipelines()["PipelineSummaries"] == []
    assert scheduler.list_schedules()["Schedules"] == []
    one_line_refusal(inv(project, env, "pipeline.delete", "titanic"), f"no pipeline {PIPELINE}")


FOLLOWED = """
import json, sys
from botocore.awsrequest import AWSResponse
from gs_ds_env.pipeline import remote, run
from gs_ds_env.settings import load_settings

stops = []
def running(params, model, **_):  # moto ends every execution at once: this one keeps going
    return AWSResponse(None, 200, {}, None), {"PipelineExecutionStatus": "Executing"}
def steps(params, model, **_):  # moto has no ListPipelineExecutionSteps
    print("following the execution", flush=True)
    return AWSResponse(None, 200, {}, None), {"PipelineExecutionSteps": [{"StepName": "prepare", "StepStatus": "Executing"}]}
def stop(params, model, **_):  # nor StopPipelineExecution
    stops.append(json.loads(params["body"]))
    return AWSResponse(None, 200, {}, None), {"PipelineExecutionArn": "x"}

original = remote.aws.session
def session(settings):
    boto_session = original(settings)
    boto_session.events.register("before-call.sagemaker.DescribePipelineExecution", running)
    boto_session.events.register("before-call.sagemaker.ListPipelineExecutionSteps", steps)
    boto_session.events.register("before-call.sagemaker.StopPipelineExecution", stop)
    return boto_session
remote.aws.session = session
remote.POLL_SECONDS = 0.5
try:
    run.run(load_settings(), "titanic", [], "inv pipeline.run titanic")
except KeyboardInterrupt as interrupted:
    print("STOPS", json.dumps(stops), flush=True)
    sys.exit(130)
"""


def test_ctrl_c_stops_the_execution_with_stop_pipeline_execution_and_records_it(project, moto, env, tmp_path):
    log = tmp_path / "pipeline.log"
    with log.open("w") as output:
        process = subprocess.Popen([str(Path(INV).parent / "python"), "-c", FOLLOWED], cwd=project, env=env,
                                   stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 300
        while (
            time.monotonic() < deadline and "following the execution" not in log.read_text() and process.poll() is None
        ):
            time.sleep(0.5)
        assert "following the execution" in log.read_text(), log.read_text()[-3000:]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130, log.read_text()[-3000:]
    text = log.read_text()
    assert f"stopping pipeline execution of {PIPELINE} (sagemaker:StopPipelineExecution)" in text
    stops = json.loads(text.split("STOPS ", 1)[1].splitlines()[0])
    (record_path,) = sorted(project.glob("runs/titanic-*/run.json"), key=lambda p: p.stat().st_mtime)[-1:]
    record = json.loads(record_path.read_text())
    assert [stop["PipelineExecutionArn"] for stop in stops] == [record["execution"]]
    assert record["status"] == "Stopped" and "StopPipelineExecution sent" in record["failure"]
    assert record["steps"]["prepare"]["status"] == "Executing"


def test_model_versions_are_listed_with_metrics_approved_and_deployed_as_latest_approved(project, moto, env):
    """Two versions as the pipeline's RegisterModel step leaves them (moto runs no step: made here)."""
    sagemaker, s3 = aws(moto, "sagemaker"), aws(moto, "s3")
    group = "gs-ds-env-registry-test"
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    for version, auc in ((1, 0.81), (2, 0.86)):
        key = f"team/titanic-run/pipelines/{group}/exec-{version}/evaluate/evaluation/evaluation.json"
        s3.put_object(
            Bucket=BUCKET, Key=key, Body=json.dumps({"binary_classification_metrics": {"auc": {"value": auc}}})
        )
        sagemaker.create_model_package(
            ModelPackageGroupName=group, ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={"Containers": [{"Image": "img", "ModelDataUrl": f"s3://{BUCKET}/models/{version}/model.tar.gz"}],
                                    "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
            ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/{key}"}}},
            CustomerMetadataProperties={"gs-ds-env:theme": "tabular", "gs-ds-env:py": "3.11"},
        )  # fmt: skip
    listed = inv(project, env, "model.list", "--group", group)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [(r[1], r[2], r[3]) for r in rows] == [
        ("1", "PendingManualApproval", "0.8100"),
        ("2", "PendingManualApproval", "0.8600"),
    ]
    one_line_refusal(inv(project, env, "endpoint.deploy", "--model-package", "latest-approved", "--dry-run"),
                     "no approved model")  # fmt: skip
    approved = inv(project, env, "model.approve", "2", "--group", group)
    assert approved.returncode == 0 and f"{group} version 2: Approved" in approved.stdout, approved.stderr
    (second,) = [p for p in sagemaker.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
                 if p["ModelPackageVersion"] == 2]  # fmt: skip
    assert (
        sagemaker.describe_model_package(ModelPackageName=second["ModelPackageArn"])["ModelApprovalStatus"]
        == "Approved"
    )
    rejected = inv(project, env, "model.reject", "1", "--group", group)
    assert rejected.returncode == 0 and "version 1: Rejected" in rejected.stdout
    plan = inv(project, env, "endpoint.deploy", "--model-package", "latest-approved", "--dry-run")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"model: {group} version 2 (Approved): s3://{BUCKET}/models/2/model.tar.gz" in plan.stdout
