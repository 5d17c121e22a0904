"""TARGET=sagemaker against real servers: moto_server for the AWS APIs (boto3, awscli and the SageMaker SDK all
make real HTTP calls, which moto records) and a real docker-registry for the docker login/tag/push half.

moto records a training job and says Completed, but runs no container and writes no model. So these tests assert
on the API calls made, and where a model is needed the test plays SageMaker's part: it runs the *pushed* image
on the *uploaded* channels with the hyperparameters of the recorded request, and puts model.tar.gz where
SageMaker would.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import subprocess
import tarfile
import time
import urllib.error
from pathlib import Path

import pytest
from conftest import INV, tool_env

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REGION = "eu-west-1"
BUCKET = "gs-ds-env-test-bucket"
REPOSITORY = "gs-ds-env-tabular-test"
ROLE = "arn:aws:iam::123456789012:role/gs-ds-env-sagemaker"


def aws(moto, service: str):
    return moto.client(service, REGION)


def sagemaker_env(tmp_path: Path, moto, base_image: str, titanic_csv: Path, **extra: str) -> dict[str, str]:
    settings = dict(
        TARGET="sagemaker",
        PY="3.11",
        BASE_IMAGE=base_image,
        TITANIC_CSV=str(titanic_csv),
        AWS_REGION=REGION,
        S3_BUCKET=BUCKET,
        S3_PREFIX="team/titanic-run",
        ECR_REPOSITORY=REPOSITORY,
        SAGEMAKER_ROLE_ARN=ROLE,
        WORKING_DIR=str(tmp_path / "work"),
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter"),
        DOCKER_CONFIG=str(tmp_path / "docker-config"),
    )
    return tool_env(**moto.env(), **{**settings, **extra})


def inv(project: Path, env: dict[str, str], *args: str):
    return subprocess.run([INV, *args], cwd=project, env=env, capture_output=True, text=True)


TRUST_SAGEMAKER = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "sagemaker.amazonaws.com"}}],
}
TRUST_EC2 = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "ec2.amazonaws.com"}}],
}


def execution_role(moto, name: str, trust: dict) -> str:
    """The role in moto's IAM (created once; the session's moto keeps it)."""
    iam = moto.client("iam", "us-east-1")
    try:
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        return iam.get_role(RoleName=name)["Role"]["Arn"]


def play_sagemaker(moto, request: dict, job_name: str, scratch: Path) -> None:
    """Do what SageMaker does with a CreateTrainingJob request: pull the image, fetch the channels into
    /opt/ml/input/data, run `train`, and upload /opt/ml/model as <output>/<job>/output/model.tar.gz."""
    s3 = aws(moto, "s3")
    root = scratch / "opt_ml"
    for channel in request["InputDataConfig"]:
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
        bucket, prefix = uri.removeprefix("s3://").split("/", 1)
        folder = root / "input/data" / channel["ChannelName"]
        folder.mkdir(parents=True)
        for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
            s3.download_file(bucket, item["Key"], str(folder / Path(item["Key"]).name))
    (root / "input/config").mkdir(parents=True)
    (root / "input/config/hyperparameters.json").write_text(json.dumps(request["HyperParameters"]))
    image = request["AlgorithmSpecification"]["TrainingImage"]
    subprocess.run(["docker", "pull", "--quiet", image], check=True, capture_output=True)
    run = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{root}:/opt/ml", image, "train"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    tarball = scratch / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        for path in (root / "model").iterdir():
            archive.add(path, arcname=path.name)
    output = request["OutputDataConfig"]["S3OutputPath"].removeprefix("s3://")
    bucket, prefix = output.split("/", 1)
    s3.upload_file(str(tarball), bucket, f"{prefix}/{job_name}/output/model.tar.gz")
    outputs = scratch / "output.tar.gz"  # /opt/ml/output/data, as SageMaker tars it
    with tarfile.open(outputs, "w:gz") as archive:
        archive.add(root / "output/data", arcname="data")
    s3.upload_file(str(outputs), bucket, f"{prefix}/{job_name}/output/output.tar.gz")


def operations(calls) -> list[str]:
    return [call.operation for call in calls]


def mutating(operation: str) -> bool:
    """A call that creates, uploads or starts something (what a preflight must never make)."""
    return operation.startswith(
        (
            "ECR.CreateRepository",
            "ECR.PutImage",
            "ECR.InitiateLayerUpload",
            "S3 PUT",
            "S3 POST",
            "SageMaker.CreateTrainingJob",
        )
    )


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


# ---- script mode on SageMaker: the SDK ships sourcedir.tar.gz under the prefix; the image's toolkit runs it -------
def test_script_mode_job_ships_the_source_dir_and_the_image_runs_it(
    tmp_path, project, moto, registry, base_image, titanic_csv
):
    execution_role(moto, "gs-ds-env-sagemaker", TRUST_SAGEMAKER)
    repository = "gs-ds-env-forecasting-test"
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "notes.csv").write_text("a,b\n1,2\n")
    env = sagemaker_env(tmp_path, moto, base_image, titanic_csv, ECR_REGISTRY=registry.host, ECR_REPOSITORY=repository)
    moto.reset_recording()
    plan = inv(
        project,
        env,
        "train",
        "--theme",
        "forecasting",
        "--entry-point",
        "themes/forecasting/example/train.py",
        "--channel",
        f"extra={extra}",
        "--dry-run",
    )
    assert plan.returncode == 0 and moto.calls() == [], plan.stderr
    assert f"s3://{BUCKET}/team/titanic-run/code/<job>/source/sourcedir.tar.gz" in plan.stdout
    assert "sagemaker_program=train.py" in plan.stdout
    assert f"s3://{BUCKET}/team/titanic-run/channels/extra/" in plan.stdout
    job = inv(
        project,
        env,
        "train",
        "--theme",
        "forecasting",
        "--entry-point",
        "themes/forecasting/example/train.py",
        "--channel",
        f"extra={extra}",
        "--hyperparameter",
        "horizon=6",
        "--metric-definition",
        "smape=sMAPE ([0-9.]+)",
        "--job-name",
        "gs-script-a",
    )
    output = job.stdout + job.stderr
    # moto records the job as Completed but writes no model: the run says so, after everything was sent, and
    # its record says so too.
    assert job.returncode == 1 and "model.tar.gz does not exist in S3" in output, output[-3000:]
    record = json.loads((project / "runs/gs-script-a/run.json").read_text())
    assert record["status"] == "failed" and "does not exist in S3" in record["reason"]
    (create,) = [call.body for call in moto.calls() if call.operation == "SageMaker.CreateTrainingJob"]
    hyperparameters = {key: value.strip('"') for key, value in create["HyperParameters"].items()}
    source = f"s3://{BUCKET}/team/titanic-run/code/gs-script-a/source/sourcedir.tar.gz"
    assert hyperparameters["sagemaker_program"] == "train.py"
    assert hyperparameters["sagemaker_submit_directory"] == source
    # Exactly the user's hyperparameters and the SDK's own keys: no --seed the script did not ask for.
    assert {key for key in hyperparameters if not key.startswith("sagemaker_")} == {"horizon"}
    assert hyperparameters["horizon"] == "6" and create["Environment"] == {"GS_SEED": "42"}
    definitions = {d["Name"]: d["Regex"] for d in create["AlgorithmSpecification"]["MetricDefinitions"]}
    assert definitions["smape"] == "sMAPE ([0-9.]+)" and "validation:mae" in definitions
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in create["InputDataConfig"]}
    (uri,) = channels.values()
    assert uri.startswith(f"s3://{BUCKET}/team/titanic-run/channels/extra/") and uri == record["channels"]["extra"]
    s3 = aws(moto, "s3")
    key = uri.removeprefix(f"s3://{BUCKET}/") + "notes.csv"
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"a,b\n1,2\n"
    archive_path = tmp_path / "sourcedir.tar.gz"
    s3.download_file(BUCKET, "team/titanic-run/code/gs-script-a/source/sourcedir.tar.gz", str(archive_path))
    with tarfile.open(archive_path) as archive:
        assert "train.py" in archive.getnames()

    # Play SageMaker: the pushed image, the request's hyperparameters, the toolkit fetching sourcedir.tar.gz from S3.
    root = tmp_path / "opt_ml"
    (root / "input/config").mkdir(parents=True)
    (root / "input/config/hyperparameters.json").write_text(json.dumps(create["HyperParameters"]))
    (root / "input/config/resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})
    )
    (root / "input/config/inputdataconfig.json").write_text(json.dumps({}))
    image = create["AlgorithmSpecification"]["TrainingImage"]
    run = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "host",  # moto listens on the host's 127.0.0.1
            "--add-host",
            "algo-1:127.0.0.1",  # the toolkit waits until every host of resourceconfig.json resolves
            "-v",
            f"{root}:/opt/ml",
            "-e",
            f"AWS_ENDPOINT_URL={moto.url}",
            "-e",
            "AWS_ACCESS_KEY_ID=testing",
            "-e",
            "AWS_SECRET_ACCESS_KEY=testing",
            "-e",
            f"AWS_DEFAULT_REGION={REGION}",
            image,
            "train",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    metrics = json.loads((root / "model/metrics.json").read_text())
    assert metrics["horizon"] == 6 and metrics["metrics"]["validation:mae"] > 0
    assert (root / "model/model.pkl").is_file()


TWO_HOST_JOB = """
from gs_ds_env import aws
from gs_ds_env.data import s3_data
from gs_ds_env.job import sagemaker_job, script_mode
from gs_ds_env.settings import load_settings

settings = load_settings(theme="cv", entry_point="themes/cv/example/train.py")
boto_session = aws.session(settings)
s3_data.ensure_bucket(settings, aws.client(boto_session, "s3"))
image = f"{settings.ecr_registry}/{settings.ecr_repository}:cv_311"
settings = settings.replace(instance_type="ml.c5.xlarge")
sagemaker_job.run_on_sagemaker(settings, boto_session, image, {}, "gs-two-hosts", script_mode.prepare(settings, {}))
"""


def test_two_hosts_of_a_torch_theme_reach_sagemaker_with_the_torchrun_launcher(tmp_path, project, moto, titanic_csv):
    """INSTANCE_COUNT=2 for a torch theme: the plan says torchrun on each host, and the Estimator sends two
    instances and the toolkit's torch_distributed switch (the cv image itself is not pushed: ~6 GB; its two-host
    run is proven in local mode by test_torch_examples)."""
    execution_role(moto, "gs-ds-env-sagemaker", TRUST_SAGEMAKER)
    env = sagemaker_env(tmp_path, moto, "unused-base", titanic_csv, INSTANCE_COUNT="2", ECR_REGISTRY="127.0.0.1:5000")
    moto.reset_recording()
    plan = inv(project, env, "train", "--theme", "cv", "--entry-point", "themes/cv/example/train.py", "--dry-run")
    assert plan.returncode == 0 and moto.calls() == [], plan.stderr
    assert "hosts: 2; the toolkit starts the script with torchrun on each host" in plan.stdout
    assert "'sagemaker_torch_distributed_enabled': 'true'" in plan.stdout

    moto.reset_recording()
    job = subprocess.run(
        [str(Path(INV).parent / "python"), "-c", TWO_HOST_JOB], cwd=project, env=env, capture_output=True, text=True
    )
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    (create,) = [call.body for call in moto.calls() if call.operation == "SageMaker.CreateTrainingJob"]
    assert create["ResourceConfig"]["InstanceCount"] == 2
    hyperparameters = {key: value.strip('"') for key, value in create["HyperParameters"].items()}
    assert hyperparameters["sagemaker_torch_distributed_enabled"] == "true"
    assert hyperparameters["sagemaker_program"] == "train.py"
    assert "InputDataConfig" not in create  # the example makes its data: fit(None), as the API requires


def channel_keys(moto, uri: str) -> list[str]:
    """The object names under a channel's prefix, relative to it."""
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    listed = aws(moto, "s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"].removeprefix(prefix) for item in listed)


def test_script_channels_hold_exactly_this_runs_files_and_a_detached_job_is_attached_later(
    tmp_path, project, moto, registry, base_image, titanic_csv
):
    """Three detached runs of a plain script on one channel folder: a file deleted locally is gone from the next
    run's channel, an unchanged folder is not sent again; then `inv job.attach` collects the job's model and
    reads its metrics from the job's log lines (no metrics.json), as SageMaker does."""
    execution_role(moto, "gs-ds-env-sagemaker", TRUST_SAGEMAKER)
    env = sagemaker_env(
        tmp_path, moto, base_image, titanic_csv, ECR_REGISTRY=registry.host, ECR_REPOSITORY="gs-ds-env-tabular-test"
    )
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "a.csv").write_text("Fare\n1\n3\n")
    (folder / "b.csv").write_text("Fare\n1000\n")

    def detached(job_name: str):
        moto.reset_recording()
        job = inv(
            project, env, "train", "--theme", "tabular", "--entry-point", "examples/bring-your-script/train.py",
            "--channel", f"train={folder}", "--job-name", job_name, "--detach", "--skip-preflight",
        )  # fmt: skip
        assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
        assert f"inv job.attach {job_name}" in job.stdout
        record = json.loads((project / "runs" / job_name / "run.json").read_text())
        assert record["status"] == "in progress (detached)"
        puts = [c.operation for c in moto.calls() if c.operation.startswith("S3 PUT") and "/channels/" in c.operation]
        return record["channels"]["train"], puts

    first, puts = detached("gs-channels-1")
    assert channel_keys(moto, first) == ["a.csv", "b.csv"] and len(puts) == 2
    (folder / "b.csv").unlink()
    second, puts = detached("gs-channels-2")
    assert second != first and channel_keys(moto, second) == ["a.csv"] and len(puts) == 1
    assert channel_keys(moto, first) == ["a.csv", "b.csv"]  # the first run's channel is left as it ran
    third, puts = detached("gs-channels-3")
    assert third == second and puts == []  # unchanged: nothing sent

    # SageMaker's part for job 3 (moto runs nothing): the pushed image runs the plain script as SageMaker would (the
    # toolkit fetches sourcedir.tar.gz from S3, the channel is the uploaded prefix); what it saves becomes the job's
    # model.tar.gz and what it prints its CloudWatch log.
    (create,) = [c.body for c in moto.calls() if c.operation == "SageMaker.CreateTrainingJob"]
    root = tmp_path / "opt_ml"
    (root / "input/config").mkdir(parents=True)
    (root / "input/config/hyperparameters.json").write_text(json.dumps(create["HyperParameters"]))
    (root / "input/config/resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})
    )
    (root / "input/config/inputdataconfig.json").write_text(json.dumps({"train": {"TrainingInputMode": "File"}}))
    (root / "input/data/train").mkdir(parents=True)
    s3 = aws(moto, "s3")
    for name in channel_keys(moto, third):
        s3.download_file(BUCKET, third.removeprefix(f"s3://{BUCKET}/") + name, str(root / "input/data/train" / name))
    image = create["AlgorithmSpecification"]["TrainingImage"]
    environment = [item for key, value in create["Environment"].items() for item in ("-e", f"{key}={value}")]
    run = subprocess.run(
        ["docker", "run", "--rm", "--network", "host", "--add-host", "algo-1:127.0.0.1", "-v", f"{root}:/opt/ml",
         "-e", f"AWS_ENDPOINT_URL={moto.url}", "-e", "AWS_ACCESS_KEY_ID=testing", "-e", "AWS_SECRET_ACCESS_KEY=testing",
         "-e", f"AWS_DEFAULT_REGION={REGION}", *environment, image, "train"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    output = create["OutputDataConfig"]["S3OutputPath"].removeprefix("s3://")
    bucket, prefix = output.split("/", 1)
    model = tmp_path / "model.tar.gz"
    with tarfile.open(model, "w:gz") as archive:
        for path in (root / "model").iterdir():
            archive.add(path, arcname=path.name)
    s3.upload_file(str(model), bucket, f"{prefix}/gs-channels-3/output/model.tar.gz")
    logs = aws(moto, "logs")
    group = "/aws/sagemaker/TrainingJobs"
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)
    stream = "gs-channels-3/algo-1-1764000000"
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)  # CloudWatch keeps no events from before its retention window
    printed = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(printed)],
    )
    attached = inv(project, env, "job.attach", "gs-channels-3")
    assert attached.returncode == 0, (attached.stdout + attached.stderr)[-3000:]
    record = json.loads((project / "runs/gs-channels-3/run.json").read_text())
    assert record["status"] == "completed" and record["job_status"] == "Completed"
    # From the log lines (a.csv alone: mean 2, rmse 1); moto's canned FinalMetricDataList entry (train:progress)
    # names no metric the job defined, so it is not one of the run's metrics.
    assert record["metrics"] == {"train:rows": 2.0, "validation:rmse": 1.0}
    with tarfile.open(project / "runs/gs-channels-3/model.tar.gz") as archive:
        assert archive.getnames() == ["model.json"]  # no metrics.json, and the job is complete
    assert record["entry_point"] == "train.py"
    again = inv(project, env, "job.attach", "gs-channels-3")
    assert again.returncode == 2 and "has already ended (completed)" in again.stderr


STOPPED_JOB = """
import json, sys, time
from botocore.awsrequest import AWSResponse
import sagemaker.session
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

original = deploy.aws.session
def session(settings):
    boto_session = original(settings)
    boto_session.events.register("before-call.sagemaker.StopTrainingJob", stop_training_job)
    return boto_session
deploy.aws.session = session

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


def trained_model(project: Path, env: dict, titanic_csv: Path, scratch: Path) -> tuple[Path, Path]:
    """A real Titanic model: the theme image pushed by `inv push`, `train` run on a split of the data. Returns
    (model.tar.gz, the validation CSV)."""
    pushed = inv(project, env, "push")
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    content_tag = next(line.rsplit(":", 1)[1] for line in pushed.stdout.splitlines() if line.startswith("image: "))
    rows = titanic_csv.read_text().splitlines()
    root = scratch / "opt_ml"
    for channel, part in (("train", rows[1:700]), ("validation", rows[700:])):
        (root / "input/data" / channel).mkdir(parents=True)
        (root / "input/data" / channel / f"{channel}.csv").write_text("\n".join([rows[0], *part]) + "\n")
    run = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{root}:/opt/ml", f"{REPOSITORY}:{content_tag}", "train"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    tarball = scratch / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        for path in (root / "model").iterdir():
            archive.add(path, arcname=path.name)
    return tarball, root / "input/data/validation/validation.csv"


def test_endpoint_deploy_list_predict_delete_and_a_transform_job(
    tmp_path, project, moto, registry, base_image, titanic_csv
):
    """moto records the calls (it runs no container: InvokeEndpoint answers a canned body, a transform job writes
    nothing); the model itself is real and is first loaded in its image, which sizes the endpoint."""
    assert execution_role(moto, "gs-ds-env-sagemaker", TRUST_SAGEMAKER) == ROLE
    env = sagemaker_env(
        tmp_path, moto, base_image, titanic_csv, ECR_REGISTRY=registry.host, TAGS="project=gs-ds-env,owner=tests"
    )
    model, validation = trained_model(project, env, titanic_csv, tmp_path / "train")
    sagemaker = aws(moto, "sagemaker")

    moto.reset_recording()
    deployed = inv(project, env, "endpoint.deploy", "--model-data", str(model), "--theme", "tabular")
    assert deployed.returncode == 0, (deployed.stdout + deployed.stderr)[-4000:]
    assert "serverless, 1024 MB" in deployed.stdout and "peak memory" in deployed.stdout
    calls = moto.calls()
    ops = [op for op in operations(calls) if op.startswith("SageMaker.Create")]
    assert ops == ["SageMaker.CreateModel", "SageMaker.CreateEndpointConfig", "SageMaker.CreateEndpoint"]
    (create_model,) = [c.body for c in calls if c.operation == "SageMaker.CreateModel"]
    (create_config,) = [c.body for c in calls if c.operation == "SageMaker.CreateEndpointConfig"]
    (create_endpoint,) = [c.body for c in calls if c.operation == "SageMaker.CreateEndpoint"]
    name = create_endpoint["EndpointName"]
    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:16]
    assert (
        create_model["PrimaryContainer"]["ModelDataUrl"]
        == f"s3://{BUCKET}/team/titanic-run/models/{digest}/model.tar.gz"
    )
    assert create_model["PrimaryContainer"]["Image"].startswith(f"{registry.host}/{REPOSITORY}:tabular_311-")
    assert create_model["ExecutionRoleArn"] == ROLE
    (variant,) = create_config["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 1024, "MaxConcurrency": 5}
    assert (
        variant["ModelName"] == create_model["ModelName"]
        and create_endpoint["EndpointConfigName"] == create_config["EndpointConfigName"]
    )
    for body in (create_model, create_config, create_endpoint):
        assert {"Key": "owner", "Value": "tests"} in body["Tags"] and {
            "Key": "gs-ds-env:run",
            "Value": "model-data",
        } in body["Tags"]

    listed = inv(project, env, "endpoint.list")
    assert listed.returncode == 0 and name in listed.stdout and "serverless 1024 MB" in listed.stdout
    assert "InService" in listed.stdout and "0 idle / 0.072 answering" in listed.stdout

    moto.reset_recording()
    predicted = inv(project, env, "predict", "--endpoint", name, "--input", str(validation))
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    (invoke,) = [c for c in moto.calls() if c.operation == f"S3 POST /endpoints/{name}/invocations"]  # REST call
    assert invoke.body == validation.read_text() and invoke.headers.get("Content-Type") == "text/csv"

    # Another team's endpoint (no gs-ds-env:run tag) is never deleted.
    sagemaker.create_model(ModelName="theirs", PrimaryContainer={"Image": "x:1"}, ExecutionRoleArn=ROLE)
    sagemaker.create_endpoint_config(
        EndpointConfigName="theirs",
        ProductionVariants=[
            {
                "VariantName": "a",
                "ModelName": "theirs",
                "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1},
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="theirs", EndpointConfigName="theirs")
    refused = inv(project, env, "endpoint.delete", "theirs")
    assert refused.returncode == 2 and "was not created by this project" in refused.stderr
    dry = inv(project, env, "endpoint.delete", name, "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would delete") == 3
    assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
    deleted = inv(project, env, "endpoint.delete", name)
    assert deleted.returncode == 0, deleted.stderr[-2000:]
    assert [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]] == ["theirs"]
    assert [c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]] == ["theirs"]
    assert [m["ModelName"] for m in sagemaker.list_models()["Models"]] == ["theirs"]
    assert "no endpoints of this project" in inv(project, env, "endpoint.list").stdout

    # A transform job: the input without its header (the columns go to the model), two instances, joined output.
    moto.reset_recording()
    transformed = inv(
        project,
        env,
        "transform",
        "--input",
        str(validation),
        "--model-data",
        str(model),
        "--theme",
        "tabular",
        "--instance-count",
        "2",
    )
    assert transformed.returncode == 1 and "Traceback" not in transformed.stderr
    assert "wrote nothing under" in transformed.stderr  # moto runs no container
    calls = moto.calls()
    (job,) = [c.body for c in calls if c.operation == "SageMaker.CreateTransformJob"]
    (transform_model,) = [c.body for c in calls if c.operation == "SageMaker.CreateModel"]
    assert job["TransformResources"] == {"InstanceType": "ml.m5.large", "InstanceCount": 2}
    assert job["DataProcessing"]["JoinSource"] == "Input"
    assert job["TransformInput"]["SplitType"] == "Line" and job["TransformInput"]["ContentType"] == "text/csv"
    source = job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    assert source == f"s3://{BUCKET}/team/titanic-run/transform-input/{job['TransformJobName']}/"
    assert (
        job["TransformOutput"]["S3OutputPath"]
        == f"s3://{BUCKET}/team/titanic-run/transform-output/{job['TransformJobName']}"
    )
    assert job["TransformOutput"]["AssembleWith"] == "Line" and {"Key": "owner", "Value": "tests"} in job["Tags"]
    header = validation.read_text().splitlines()[0]
    assert transform_model["PrimaryContainer"]["Environment"] == {"GS_CSV_COLUMNS": header}
    sent = (
        aws(moto, "s3")
        .get_object(Bucket=BUCKET, Key=source.removeprefix(f"s3://{BUCKET}/") + "validation.csv")["Body"]
        .read()
        .decode()
    )
    assert sent.splitlines() == validation.read_text().splitlines()[1:]
    assert "SageMaker.DeleteModel" in operations(calls)  # the transform's model does not outlive it


def test_studio_image_pushes_the_workspace_image_then_makes_the_studio_objects_and_its_dry_run_calls_nothing(
    tmp_path, project, moto, registry, base_image, titanic_csv, monkeypatch, capsys
):
    """`inv studio-image`: the workspace image goes to the real registry as the training image does (ECR's half to
    moto); the SageMaker half (CreateImage ... UpdateDomain, which moto lacks) to botocore's Stubber, which checks
    that the version is made from exactly the pushed image."""
    from botocore.stub import ANY, Stubber

    from gs_ds_env.aws import session as aws_session
    from gs_ds_env.settings import load_settings
    from gs_ds_env.workspace import studio

    env = sagemaker_env(tmp_path, moto, base_image, titanic_csv, ECR_REGISTRY=registry.host, BASE_JOB_NAME="gs-studio")
    moto.reset_recording()
    plan = inv(project, env, "studio-image", "--domain-id", "d-abcdef123456", "--dry-run")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert moto.calls() == [] and workspace_tags(registry) == []
    assert "sagemaker:CreateImage gs-studio-tabular-py311" in plan.stdout
    assert "sagemaker:UpdateDomain d-abcdef123456" in plan.stdout
    planned_uri = plan.stdout.split("  image: ", 1)[1].split()[0]
    assert planned_uri.startswith(f"{registry.host}/{REPOSITORY}:tabular_311-workspace-")

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(repo_root=project)
    sm = studio._sagemaker(aws_session(settings))
    stub = Stubber(sm)
    name = "gs-studio-tabular-py311"
    arn = f"arn:aws:sagemaker:{REGION}:123456789012:image/{name}"
    stub.add_client_error("describe_image", "ResourceNotFound", "no such image", expected_params={"ImageName": name})
    stub.add_response("create_image", {"ImageArn": arn}, {"ImageName": name, "RoleArn": ROLE, "DisplayName": ANY,
                      "Description": ANY, "Tags": [{"Key": "project", "Value": "gs-ds-env"}, {"Key": "gs-ds-env:studio-image", "Value": "tabular_311"}]})  # fmt: skip
    stub.add_response("describe_image", {"ImageName": name, "ImageStatus": "CREATED"}, {"ImageName": name})
    stub.add_client_error("describe_image_version", "ResourceNotFound", "none", expected_params={"ImageName": name})
    stub.add_response("create_image_version", {"ImageVersionArn": f"{arn.replace(':image/', ':image-version/')}/1"},
                      {"ImageName": name, "BaseImage": planned_uri, "ClientToken": ANY})  # fmt: skip
    stub.add_response(
        "describe_image_version", {"ImageVersionStatus": "CREATED", "Version": 1}, {"ImageName": name, "Version": 1}
    )
    stub.add_client_error(
        "describe_app_image_config", "ResourceNotFound", "none", expected_params={"AppImageConfigName": name}
    )
    stub.add_response(
        "create_app_image_config", {}, {"AppImageConfigName": name, "Tags": ANY, "JupyterLabAppImageConfig": ANY}
    )
    monkeypatch.setattr(studio, "_sagemaker", lambda boto_session: sm)
    with stub:
        studio.run(settings, "jupyterlab", "", remove=False, dry_run=False)
        stub.assert_no_pending_responses()
    assert f"image: {planned_uri} (pushed)" in capsys.readouterr().out
    # The version names exactly what the registry holds (content tag and kernel-name tag, one manifest).
    assert workspace_tags(registry) == sorted(["tabular_311-workspace", planned_uri.rsplit(":", 1)[1]])
    assert registry.digest(REPOSITORY, "tabular_311-workspace") == registry.digest(
        REPOSITORY, planned_uri.rsplit(":", 1)[1]
    )
    assert "ECR.GetAuthorizationToken" in operations(moto.calls())  # docker login through ECR, as for training


def workspace_tags(registry) -> list[str]:
    try:
        return sorted(tag for tag in registry.tags(REPOSITORY) if "workspace" in tag)
    except urllib.error.HTTPError:  # the repository does not exist yet
        return []
