"""`inv status` on AWS (moto_server): this project's endpoint with its $/h, a training job in progress (moto ends
jobs at once and has no ListImages: botocore handlers answer those as SageMaker does for a running job and an image),
a pipeline schedule, the notebook instance with what its idle watcher last said; what is not this project's is left
out; --json parses; the exit code for cron. (Local containers, one orphaned by kill -9: test_serving_faults.py.)"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from aws_fakes import REGION
from botocore.awsrequest import AWSResponse
from conftest import INV, clone_project, tool_env

from gs_ds_env.ops import status
from gs_ds_env.serve.endpoint import RUN_TAG
from gs_ds_env.settings import load_settings

BASE = "gs-ds-env-status"


@pytest.fixture
def settings(tmp_path, moto, monkeypatch):
    for key, value in moto.env().items():
        monkeypatch.setenv(key, value)
    project = clone_project(tmp_path / "project")
    return load_settings(repo_root=project, target="local", aws_region=REGION, base_job_name=BASE,
                         working_dir=tmp_path / "work")  # fmt: skip


def endpoint(moto, name: str, tagged: bool) -> None:
    sagemaker = moto.client("sagemaker", REGION)
    role = "arn:aws:iam::123456789012:role/x"
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=role, PrimaryContainer={"Image": "img"})
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[{"VariantName": "all", "ModelName": name, "InstanceType": "ml.m5.large",
                             "InitialInstanceCount": 2}],
    )  # fmt: skip
    tags = [{"Key": RUN_TAG, "Value": "run-1"}] if tagged else []
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name, Tags=tags or [{"Key": "other", "Value": "x"}])


def with_running_training_job(boto_session, name: str, started: datetime):
    """SageMaker's answers for a job still training (moto's jobs are Completed as soon as they are created)."""

    def listed(params, **_):
        summaries = [{"TrainingJobName": name, "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:1:training-job/{name}",
                      "CreationTime": started, "TrainingJobStatus": "InProgress"},
                     {"TrainingJobName": "someone-elses-job", "TrainingJobArn": "arn:x", "CreationTime": started,
                      "TrainingJobStatus": "InProgress"}]  # fmt: skip
        return AWSResponse(None, 200, {}, None), {"TrainingJobSummaries": summaries}

    def described(params, **_):
        return AWSResponse(None, 200, {}, None), {
            "TrainingJobName": name, "SecondaryStatus": "Training",
            "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 5},
        }  # fmt: skip

    def images(params, **_):  # moto has no ListImages
        found = [{"ImageName": f"{BASE}-tabular-py312", "ImageArn": "arn:x:1", "ImageStatus": "CREATED",
                  "CreationTime": started},
                 {"ImageName": f"team-{BASE}", "ImageArn": "arn:x:2", "ImageStatus": "CREATED", "CreationTime": started}]  # fmt: skip
        return AWSResponse(None, 200, {}, None), {"Images": found}

    boto_session.events.register("before-call.sagemaker.ListTrainingJobs", listed)
    boto_session.events.register("before-call.sagemaker.DescribeTrainingJob", described)
    boto_session.events.register("before-call.sagemaker.ListImages", images)
    return boto_session


def test_status_lists_what_bills_on_aws_with_its_price_and_how_to_stop_it(settings, moto, tmp_path):
    endpoint(moto, f"{BASE}-endpoint", tagged=True)
    endpoint(moto, f"{BASE}-not-ours", tagged=False)  # named like ours, but not tagged by this project
    scheduler = moto.client("scheduler", REGION)
    scheduler.create_schedule(
        Name=f"{BASE}-titanic-schedule", ScheduleExpression="cron(0 6 * * ? *)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/{BASE}-titanic", "RoleArn": "arn:aws:iam::123456789012:role/s"},
    )  # fmt: skip
    boto_session = with_running_training_job(
        boto3.Session(region_name=REGION), f"{BASE}-tabular-titanic-1", datetime.now(timezone.utc) - timedelta(hours=3)
    )
    items, notes = status.collect(settings, check_aws=True, boto_session=boto_session)
    assert notes == []
    rows = {(i.kind, i.name): i for i in items}
    job = rows[("training job", f"{BASE}-tabular-titanic-1")]
    assert job.state == "Training" and 2.9 < job.age_hours < 3.1
    assert job.usd_per_hour == pytest.approx(2 * 0.23)  # 2 x ml.m5.xlarge
    assert job.stop == f"aws sagemaker stop-training-job --training-job-name {BASE}-tabular-titanic-1"
    served = rows[("endpoint", f"{BASE}-endpoint")]
    assert served.usd_per_hour == pytest.approx(2 * 0.115) and served.stop == f"inv endpoint.delete {BASE}-endpoint"
    schedule = rows[("pipeline schedule", f"{BASE}-titanic-schedule")]
    assert schedule.stop == "inv pipeline.schedule titanic --off" and not schedule.running
    assert not [i for i in items if "not-ours" in i.name or "someone-elses" in i.name]
    # cron: the job ran 3 hours; the schedule, which bills nothing, is never "too old".
    assert {i.name for i in status.too_old(items, 2)} == {f"{BASE}-tabular-titanic-1"} | (
        {f"{BASE}-endpoint"} if served.age_hours > 2 else set()
    )
    text = status.table(items, notes)
    assert f"billing now: about {2 * 0.23 + 2 * 0.115:.3f} USD/h" in text
    parsed = json.loads(status.as_json(items, notes))
    assert {item["kind"] for item in parsed["items"]} == {
        "training job",
        "endpoint",
        "pipeline schedule",
        "studio image",
    }
    assert rows[("studio image", f"{BASE}-tabular-py312")].stop == "inv studio-image --delete"

    # On a notebook instance: the instance itself, its price, and what the idle watcher last said.
    sagemaker = moto.client("sagemaker", REGION)
    sagemaker.create_notebook_instance(
        NotebookInstanceName="status-notebook", InstanceType="ml.t3.medium", RoleArn="arn:aws:iam::123456789012:role/n"
    )
    metadata = tmp_path / "resource-metadata.json"
    metadata.write_text(json.dumps({"ResourceName": "status-notebook"}))
    idle_log = tmp_path / "idle-stop.log"
    idle_log.write_text(
        "2026-12-05T10:00:00Z idle-stop: not idle: kernel python3 (1a2b3c4d) is busy: a cell is running\n"
    )
    notebook = status.notebook_item(boto_session, metadata, idle_log)
    assert notebook.usd_per_hour == 0.05 and notebook.name == "status-notebook"
    assert "idle watcher: not idle: kernel python3 (1a2b3c4d) is busy" in notebook.state
    assert notebook.stop == "aws sagemaker stop-notebook-instance --notebook-instance-name status-notebook"


CRON = "gs-ds-env-cron"


def test_status_task_checks_aws_only_when_asked_and_exits_for_cron(settings, moto):
    # Its own names: moto lives for the session, and the test above left its endpoint and schedule there.
    env = tool_env(**moto.env(), WORKING_DIR=str(settings.working_dir), AWS_REGION=REGION, BASE_JOB_NAME=CRON,
                   TARGET="local")  # fmt: skip
    endpoint(moto, f"{CRON}-endpoint", tagged=True)
    local = subprocess.run([INV, "status"], cwd=settings.repo_root, env=env, capture_output=True, text=True)
    assert local.returncode == 0 and "AWS: not checked (TARGET=local)" in local.stdout, local.stderr
    both = subprocess.run([INV, "status", "--aws", "--json"], cwd=settings.repo_root, env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert both.returncode == 0, both.stderr
    listed = json.loads(both.stdout)
    assert [i["name"] for i in listed["items"]] == [f"{CRON}-endpoint"]
    assert [n for n in listed["notes"] if "Studio images: not listed" in n]  # moto lacks ListImages: said, not hidden
    cron = subprocess.run([INV, "status", "--aws", "--max-hours", "0"], cwd=settings.repo_root, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert cron.returncode == 1 and cron.stderr.strip() == f"1 running longer than 0 h: endpoint {CRON}-endpoint"
