"""TARGET=sagemaker training against real servers (moto_server for the AWS APIs, a docker-registry for the push; see
aws_fakes.py): `inv deploy` pushes, uploads, trains and reports; --dry-run calls nothing; a missing role or a
preflight failure stops before anything is paid for; Ctrl-C sends StopTrainingJob and records it."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import tarfile
import time
import urllib.error
from pathlib import Path

import pytest
from aws_fakes import (
    BUCKET,
    REGION,
    REPOSITORY,
    ROLE,
    TRUST_EC2,
    TRUST_SAGEMAKER,
    aws,
    execution_role,
    inv,
    mutating,
    operations,
    play_sagemaker,
    sagemaker_env,
)
from conftest import INV

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_sagemaker_deploy_push_upload_train_report(tmp_path, project, moto, registry, base_image, titanic_csv):
    assert execution_role(moto, "gs-ds-env-sagemaker", TRUST_SAGEMAKER) == ROLE
    env = sagemaker_env(
        tmp_path,
        moto,
        base_image,
        titanic_csv,
        ECR_REGISTRY=registry.host,
        USE_SPOT="true",
        MAX_RUN="1800",
        MAX_WAIT="3600",
        TAGS="project=gs-ds-env,owner=tests",
    )

    # The preflight on its own, before anything exists: green (warnings only where moto cannot answer).
    preflight = inv(project, env, "doctor", "--preflight")
    assert preflight.returncode == 0, preflight.stdout + preflight.stderr
    assert "FAIL" not in preflight.stdout and "image train" in preflight.stdout

    # ---- first deploy: everything is created and sent; moto writes no model, so the run must say so and fail
    moto.reset_recording()
    first = inv(project, env, "deploy", "--job-name", "gs-test-job-a")
    output = first.stdout + first.stderr
    assert first.returncode != 0
    assert (
        "gs-test-job-a is Completed but s3://gs-ds-env-test-bucket/team/titanic-run/output/gs-test-job-a/output/"
        "model.tar.gz does not exist in S3" in output
    )
    assert "empty /opt/ml/model" in output and "Traceback" not in output
    # The preflight passed (role and trust, ECR login, bucket, image on a sample) and the deploy went on.
    for line in (
        "preflight ok   execution role: gs-ds-env-sagemaker exists and trusts sagemaker.amazonaws.com",
        "preflight ok   ECR login: ecr:GetAuthorizationToken allowed",
        "preflight ok   image train: `train` on 20 rows per channel saved",
    ):
        assert line in output
    calls = moto.calls()
    ops = operations(calls)

    # ECR: repository created with scan-on-push; login token asked for; the token never shows in any output.
    ecr = aws(moto, "ecr")
    (repo,) = ecr.describe_repositories(repositoryNames=[REPOSITORY])["repositories"]
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True and repo["imageTagMutability"] == "MUTABLE"
    assert "ECR.GetAuthorizationToken" in ops
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    assert base64.b64decode(token).decode().split(":", 1)[1] not in output

    # The registry holds the content tag and the kernel-name tag, same manifest.
    tags = registry.tags(REPOSITORY)
    content_tag = next(tag for tag in tags if tag.startswith("tabular_311-"))
    assert tags == sorted(["tabular_311", content_tag])
    assert registry.digest(REPOSITORY, "tabular_311") == registry.digest(REPOSITORY, content_tag)

    # S3: bucket in the region, public access blocked, encrypted by default; objects encrypted at the right keys.
    s3 = aws(moto, "s3")
    assert s3.get_bucket_location(Bucket=BUCKET)["LocationConstraint"] == REGION
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    rule = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    for channel, rows in (("train", 712), ("validation", 179)):
        key = f"team/titanic-run/titanic/{channel}/{channel}.csv"
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ServerSideEncryption"] == "AES256"
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert head["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest()
        assert body.decode().count("\n") == rows + 1

    # The CreateTrainingJob request, as moto received it.
    (create,) = [call.body for call in calls if call.operation == "SageMaker.CreateTrainingJob"]
    assert create["TrainingJobName"] == "gs-test-job-a"
    assert create["AlgorithmSpecification"]["TrainingImage"] == f"{registry.host}/{REPOSITORY}:{content_tag}"
    assert create["RoleArn"] == ROLE
    assert create["ResourceConfig"] == {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5}
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in create["InputDataConfig"]}
    assert channels == {ch: f"s3://{BUCKET}/team/titanic-run/titanic/{ch}/{ch}.csv" for ch in ("train", "validation")}
    assert create["HyperParameters"] == {
        "model": "blend",
        "n_estimators": "500",
        "max_depth": "3",
        "learning_rate": "0.03",
        "seed": "42",
    }
    assert create["EnableManagedSpotTraining"] is True
    assert create["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800, "MaxWaitTimeInSeconds": 3600}
    assert create["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/team/titanic-run/checkpoints/gs-test-job-a"
    assert create["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/team/titanic-run/output"
    assert {m["Name"] for m in create["AlgorithmSpecification"]["MetricDefinitions"]} >= {"validation:auc"}
    assert create["ProfilerConfig"] == {"DisableProfiler": True} and "DebugHookConfig" not in create
    assert {"Key": "owner", "Value": "tests"} in create["Tags"]

    # ---- SageMaker's part for the next job: the pushed image, the uploaded channels, the recorded request.
    play_sagemaker(moto, create, "gs-test-job-b", tmp_path / "sagemaker")

    # ---- second deploy, nothing changed: nothing pushed, nothing uploaded, a verified model and a full report.
    moto.reset_recording()
    second = inv(project, env, "deploy", "--job-name", "gs-test-job-b")
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    ops = operations(moto.calls())
    assert not [op for op in ops if op.startswith("S3 PUT /gs-ds-env-test-bucket/team/titanic-run/titanic/")]
    assert "ECR.CreateRepository" not in ops
    assert "nothing to push" in second.stderr
    assert "starting a paid training job gs-test-job-b: 1 x ml.m5.large at 0.115 USD/h, at most" in second.stdout
    assert registry.tags(REPOSITORY) == tags
    (create_b,) = [call.body for call in moto.calls() if call.operation == "SageMaker.CreateTrainingJob"]
    assert {k: v for k, v in create_b.items() if k not in {"TrainingJobName", "CheckpointConfig"}} == {
        k: v for k, v in create.items() if k not in {"TrainingJobName", "CheckpointConfig"}
    }

    run_dir = project / "runs/gs-test-job-b"
    record = json.loads((run_dir / "run.json").read_text())
    with tarfile.open(run_dir / "model.tar.gz") as archive:
        expected_metrics = json.load(archive.extractfile("metrics.json"))["metrics"]
    assert record["target"] == "sagemaker" and record["region"] == REGION and record["account"] == "123456789012"
    assert record["s3_prefix_uri"] == f"s3://{BUCKET}/team/titanic-run"
    assert record["ecr_repository"] == REPOSITORY
    assert record["image"]["uri"] == create["AlgorithmSpecification"]["TrainingImage"]
    assert record["image"]["digest"] == registry.digest(REPOSITORY, content_tag)
    assert record["image"]["pushed"] == []
    assert all(not entry["sent"] for entry in record["data"]["objects"])
    assert record["job_name"] == "gs-test-job-b"
    assert record["model_artifact"] == f"s3://{BUCKET}/team/titanic-run/output/gs-test-job-b/output/model.tar.gz"
    assert record["metrics"] == expected_metrics and record["metrics"]["validation:auc"] >= 0.85
    assert record["instance_type"] == "ml.m5.large" and "| 1 | ml.m5.large |" in record["instance_evidence"]
    assert record["billable_seconds"] is not None and record["cost_usd"] is not None  # moto: start == end, so 0
    assert record["log_stream"].startswith("/aws/sagemaker/TrainingJobs")
    assert record["console_url"].endswith(f"region={REGION}#/jobs/gs-test-job-b")
    assert "make deploy THEME=tabular PY=3.11 TARGET=sagemaker" in record["reproduce"]
    # The kernel the notebook uses and the pushed image were compared before the paid job: 0 differences.
    assert record["parity"]["checked"] and record["parity"]["differences"] == []
    assert record["versions"]["lock_sha256"] and record["versions"]["image_packages"]["pandas"]
    report = (run_dir / "report.md").read_text()
    for needle in (
        "## Summary",
        "## Flow",
        "## Instance choice",
        "## Hyperparameters",
        "## Metrics",
        "Billable seconds",
        "Estimated cost (USD)",
        "CloudWatch log group / stream",
        "## Reproduce",
        record["image"]["digest"],
        record["model_artifact"],
    ):
        assert needle in report
    # The job's pictures (from output.tar.gz in S3) are shown in the report.
    assert record["pictures"] == ["confusion_matrix.png", "roc_curve.png"]
    assert all((run_dir / name).is_file() and f"]({name})" in report for name in record["pictures"])


def test_dry_run_plans_everything_and_calls_nothing(tmp_path, project, moto, base_image, titanic_csv):
    env = sagemaker_env(tmp_path, moto, base_image, titanic_csv, BASE_JOB_NAME="gs-plan", ECR_REGISTRY="")
    moto.reset_recording()
    result = inv(project, env, "deploy", "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert moto.calls() == []
    plan = result.stdout
    assert "docker login --username AWS --password-stdin 123456789012.dkr.ecr.eu-west-1.amazonaws.com" in plan
    assert f"s3:PutObject s3://{BUCKET}/team/titanic-run/titanic/train/train.csv ServerSideEncryption=AES256" in plan
    request = json.loads(
        plan.split("sagemaker:CreateTrainingJob (as the SDK's Estimator.fit sends it):\n", 1)[1].split("\n  8.", 1)[0]
    )
    assert request["RoleArn"] == ROLE and request["TrainingJobName"].startswith("gs-plan-")
    assert request["AlgorithmSpecification"]["TrainingImage"].startswith(
        f"123456789012.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}:tabular_311-"
    )
    assert "Creating training-job" not in result.stdout + result.stderr


def test_missing_role_stops_before_any_aws_call(tmp_path, project, moto, base_image, titanic_csv):
    env = sagemaker_env(tmp_path, moto, base_image, titanic_csv, SAGEMAKER_ROLE_ARN="")
    moto.reset_recording()
    result = inv(project, env, "deploy")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: SAGEMAKER_ROLE_ARN is missing: set it in .env (arn:aws:iam::<12-digit account>:role/<name>)"
    ]
    assert moto.calls() == []


# ---- preflight: each seeded fault is one line, before anything is pushed or paid for ---------------------------
@pytest.mark.parametrize(
    "role, trust, message",
    [
        (
            "gs-ds-env-no-such-role",
            None,
            "execution role: role arn:aws:iam::123456789012:role/gs-ds-env-no-such-role does not exist",
        ),
        (
            "gs-ds-env-ec2-role",
            TRUST_EC2,
            "execution role: role gs-ds-env-ec2-role does not trust sagemaker.amazonaws.com",
        ),
    ],
)
def test_preflight_names_a_bad_role_and_stops_the_deploy(
    tmp_path, project, moto, registry, base_image, titanic_csv, role, trust, message
):
    if trust:
        execution_role(moto, role, trust)
    repository = f"preflight-{role}"
    env = sagemaker_env(
        tmp_path,
        moto,
        base_image,
        titanic_csv,
        ECR_REGISTRY=registry.host,
        ECR_REPOSITORY=repository,
        SAGEMAKER_ROLE_ARN=f"arn:aws:iam::123456789012:role/{role}",
    )
    doctor = inv(project, env, "doctor", "--preflight")
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    failed = [line for line in doctor.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and message.split(": ", 1)[1] in failed[0], doctor.stdout
    moto.reset_recording()
    deploy = inv(project, env, "deploy", "--job-name", f"gs-preflight-{len(role)}")
    assert deploy.returncode == 1
    (line,) = deploy.stderr.strip().splitlines()
    assert line.startswith(f"error: {message}") and "nothing was pushed or started" in line
    assert not [op for op in operations(moto.calls()) if mutating(op)]
    with pytest.raises(urllib.error.HTTPError):
        registry.tags(repository)  # the registry never heard of it


def test_preflight_catches_an_image_that_saves_no_model_before_any_push(
    tmp_path, moto, registry, base_image, titanic_csv
):
    from conftest import clone_project

    execution_role(moto, "gs-ds-env-sagemaker", TRUST_SAGEMAKER)
    project = clone_project(tmp_path / "project")
    (project / "training/train").write_text("#!/usr/bin/env python3\nprint('trained nothing')\n")  # exits 0, no model
    repository = "preflight-empty-model"
    env = sagemaker_env(tmp_path, moto, base_image, titanic_csv, ECR_REGISTRY=registry.host, ECR_REPOSITORY=repository)
    moto.reset_recording()
    deploy = inv(project, env, "deploy", "--job-name", "gs-preflight-empty", "--allow-drift")
    assert deploy.returncode == 1, deploy.stdout + deploy.stderr
    line = deploy.stderr.strip().splitlines()[-1]  # the kernel and the build log above it
    assert line.startswith("error: image train: ") and "left /opt/ml/model empty" in line
    assert "Traceback" not in deploy.stderr and deploy.stderr.count("error:") == 1
    assert not [op for op in operations(moto.calls()) if mutating(op)]
    with pytest.raises(urllib.error.HTTPError):
        registry.tags(repository)


STOPPED_JOB = """
import json, sys, time
from botocore.awsrequest import AWSResponse
import sagemaker.session
from gs_ds_env import aws
from gs_ds_env.job import deploy, script_mode
from gs_ds_env.settings import load_settings

def still_running(self, job_name, *args, **kwargs):  # moto ends every job at once: this one keeps going
    print("following the job", flush=True)
    time.sleep(300)

sagemaker.session.Session.logs_for_job = still_running
stops = []

def stop_training_job(params, model, **_):  # moto has no StopTrainingJob: answer it here, as SageMaker would
    stops.append(json.loads(params["body"]))
    return AWSResponse(None, 200, {}, None), {}

original = aws.session
def session(settings):
    boto_session = original(settings)
    boto_session.events.register("before-call.sagemaker.StopTrainingJob", stop_training_job)
    return boto_session
aws.session = session

settings = load_settings(theme="tabular", entry_point="examples/bring-your-script/train.py")
try:
    deploy.run_script(settings, channels={}, hyperparameters={}, job_name="gs-stopped", skip_preflight=True)
except KeyboardInterrupt as interrupted:
    print("STOPS", json.dumps(stops), flush=True)
    sys.exit(130)
"""


def test_ctrl_c_stops_a_sagemaker_job_with_stop_training_job_and_records_it(
    tmp_path, project, moto, registry, base_image, titanic_csv
):
    """moto lacks StopTrainingJob: a botocore before-call handler answers it (and records the request); the rest
    (push, CreateTrainingJob, the record) goes to moto and the registry."""
    import signal

    execution_role(moto, "gs-ds-env-sagemaker", TRUST_SAGEMAKER)
    env = sagemaker_env(
        tmp_path, moto, base_image, titanic_csv, ECR_REGISTRY=registry.host, ECR_REPOSITORY="gs-ds-env-tabular-test"
    )
    log = tmp_path / "job.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(Path(INV).parent / "python"), "-c", STOPPED_JOB], cwd=project, env=env, stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for _ in range(600):
            if "following the job" in log.read_text() or process.poll() is not None:
                break
            time.sleep(0.5)
        assert "following the job" in log.read_text(), log.read_text()[-3000:]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130, log.read_text()[-3000:]
    text = log.read_text()
    assert "stopping training job gs-stopped (sagemaker:StopTrainingJob)" in text
    stops = json.loads(text.split("STOPS ", 1)[1].splitlines()[0])
    assert stops == [{"TrainingJobName": "gs-stopped"}]
    record = json.loads((project / "runs/gs-stopped/run.json").read_text())
    assert record["status"] == "stopped (Ctrl-C): StopTrainingJob sent"
