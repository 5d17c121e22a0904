"""The AWS path's decisions: instance choice (quotas, prices), failed jobs, IAM policies, the push script.

Service Quotas and the Price List API are not in moto: the instance tests stub those two clients in-process
(botocore's Stubber). Failed jobs go to moto_server for real, except DescribeTrainingJob, which moto can only
answer with Completed: a botocore before-call hook answers Failed instead.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import json
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import warnings
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from conftest import REPO, clone_project, copy_repo, tool_env

from gs_ds_env import aws
from gs_ds_env.aws import AwsError, iam, instance
from gs_ds_env.aws import calls as aws_calls
from gs_ds_env.job import sagemaker_job, sagemaker_results, training_job
from gs_ds_env.job.training_job import hint_for
from gs_ds_env.settings import ConfigError, load_settings

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/gs-ds-env-sagemaker"


@functools.cache
def project() -> Path:
    """One copy of the project for this module's settings: a .env in the checkout never leaks into them."""
    root = Path(tempfile.mkdtemp(prefix="gs-aws-units-"))
    atexit.register(shutil.rmtree, root, True)
    return copy_repo(root / "project", "bin", "themes", "docker", ".env.example")


def settings(**overrides):
    values = dict(
        repo_root=project(),
        target="sagemaker",
        aws_region=REGION,
        s3_bucket="team-bucket",
        s3_prefix="ds/titanic",
        sagemaker_role_arn=ROLE,
        ecr_repository="gs-ds-env-tabular",
        base_job_name="gs-ds-env-titanic",
    )
    return load_settings(**{**values, **overrides})


def offline_session() -> boto3.Session:
    return boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


def quota_client(defaults: dict[str, float], applied: dict[str, float], job: str = "training"):
    client = offline_session().client("service-quotas")
    stub = Stubber(client)
    for operation, values in (("list_aws_default_service_quotas", defaults), ("list_service_quotas", applied)):
        quotas = [
            {"ServiceCode": "sagemaker", "QuotaName": f"{name} for {job} job usage", "Value": value}
            for name, value in values.items()
        ]
        quotas.append({"ServiceCode": "sagemaker", "QuotaName": "Number of training jobs", "Value": 50.0})
        stub.add_response(operation, {"Quotas": quotas}, {"ServiceCode": "sagemaker"})
    stub.activate()
    return client


def pricing_client(products: list[dict] | None):
    client = offline_session().client("pricing", region_name="us-east-1")
    stub = Stubber(client)
    if products is None:
        stub.add_client_error("get_products", "AccessDeniedException", "not authorized to perform pricing:GetProducts")
    else:
        stub.add_response("get_products", {"PriceList": [json.dumps(p) for p in products], "FormatVersion": "aws_v1"})
    stub.activate()
    return client


def product(usage_type: str, usd: str) -> dict:
    return {
        "product": {"productFamily": "ML Instance", "attributes": {"usagetype": usage_type, "regionCode": REGION}},
        "terms": {
            "OnDemand": {
                "SKU.TERM": {"priceDimensions": {"SKU.TERM.RATE": {"unit": "Hrs", "pricePerUnit": {"USD": usd}}}}
            }
        },
    }


def test_auto_picks_the_cheapest_type_with_quota_and_says_why():
    # Defaults say 0 for m5.large and c5.xlarge; the account has an applied quota of 2 for c5.xlarge.
    quotas = quota_client(
        {"ml.m5.large": 0, "ml.c5.xlarge": 0, "ml.m5.xlarge": 1, "ml.m4.xlarge": 0}, {"ml.c5.xlarge": 2}
    )
    choice = instance.choose(settings(), offline_session(), quotas, pricing_client(None))
    assert choice.instance_type == "ml.c5.xlarge" and choice.price == 0.204
    assert "quota 2" in choice.reason and f"table us-east-1 {instance.PRICE_TABLE_DATE}" in choice.reason
    table = choice.table()
    assert "| 1 | ml.c5.xlarge | 2 | 0.204 |" in table and "**picked**" in table
    assert "| ml.m5.large | 0 | 0.115 |" in table and "quota 0" in table
    assert not any(row.instance_type.startswith("ml.g") for row in choice.rows)  # CPU-only image


def test_unreadable_quotas_are_called_unknown_not_above_zero():
    client = offline_session().client("service-quotas")
    stub = Stubber(client)
    for operation in ("list_aws_default_service_quotas", "list_service_quotas"):
        stub.add_client_error(operation, "AccessDeniedException", "not authorized to perform servicequotas:List")
    stub.activate()
    choice = instance.choose(settings(), offline_session(), client, pricing_client(None))
    assert choice.instance_type == "ml.m5.large"
    assert "quota is UNKNOWN" in choice.reason and "quota above 0" not in choice.reason
    assert any("training quotas UNKNOWN" in warning for warning in choice.warnings)


def test_a_processing_job_is_picked_by_processing_quotas_and_prices():
    """Service Quotas and the Price List name processing apart from training (Stubber: moto has neither)."""
    quotas = quota_client({"ml.m5.large": 0, "ml.c5.xlarge": 0, "ml.m5.xlarge": 2}, {}, job="processing")
    products = [product("EU-Processing:ml.m5.xlarge", "0.2700000000"), product("EU-Train:ml.m5.xlarge", "0.2500000000")]
    choice = instance.choose(settings(), offline_session(), quotas, pricing_client(products), job="processing")
    assert choice.instance_type == "ml.m5.xlarge" and choice.price == 0.27
    assert "CreateProcessingJob accepts with a processing quota above 0" in choice.reason
    assert "quota (processing)" in choice.table() and "(ProcessingInstanceType)" in choice.evidence()
    # Training quotas say nothing about processing: with none for processing the quota is UNKNOWN, never assumed.
    training_only = quota_client({"ml.m5.large": 4}, {})
    unknown = instance.choose(settings(), offline_session(), training_only, pricing_client(None), job="processing")
    assert "its processing quota is UNKNOWN" in unknown.reason
    assert any("processing quotas UNKNOWN" in warning for warning in unknown.warnings)


def test_price_list_api_prices_win_over_the_table():
    products = [
        product("EU-Train:ml.m5.large", "0.1340000000"),
        product("EU-Host:ml.m5.large", "0.0100000000"),
        product("EU-Train:ml.m5.xlarge", "0.2690000000"),
    ]
    quotas = quota_client({"ml.m5.large": 1, "ml.m5.xlarge": 1}, {})
    choice = instance.choose(settings(), offline_session(), quotas, pricing_client(products))
    assert choice.instance_type == "ml.m5.large"
    assert choice.price == 0.134  # the training price, not the hosting one
    assert "Price List API eu-west-1" in choice.reason


def test_zero_quota_stops_before_the_job():
    with pytest.raises(
        ConfigError,
        match=r"INSTANCE_TYPE=ml.m5.large has a training quota of 0 in eu-west-1: "
        r"the job would fail with ResourceLimitExceeded",
    ):
        instance.choose(
            settings(instance_type="ml.m5.large"),
            offline_session(),
            quota_client({"ml.m5.large": 0, "ml.c5.xlarge": 1}, {}),
            pricing_client(None),
        )
    with pytest.raises(ConfigError, match="no CPU training instance type has a quota above 0 in eu-west-1"):
        instance.choose(settings(), offline_session(), quota_client({"ml.m5.large": 0}, {}), pricing_client(None))


def test_explicit_types_are_checked_against_the_same_evidence():
    with pytest.raises(ConfigError, match=r"INSTANCE_TYPE=ml.m5.tiny is not a training instance type .* ml.m5.large"):
        instance.choose(
            settings(instance_type="ml.m5.tiny"), offline_session(), quota_client({}, {}), pricing_client(None)
        )
    choice = instance.choose(
        settings(instance_type="ml.m5.2xlarge"),
        offline_session(),
        quota_client({"ml.m5.large": 1, "ml.m5.2xlarge": 1}, {}),
        pricing_client(None),
    )
    assert choice.instance_type == "ml.m5.2xlarge"
    assert choice.warnings == [
        "ml.m5.2xlarge costs 0.461 USD/h; ml.m5.large would do at 0.115 USD/h (INSTANCE_TYPE=auto)"
    ]


# ---- failed jobs: real CreateTrainingJob and logs on moto; DescribeTrainingJob answers Failed --------------------
def failing_session(job_name: str, reason: str):
    session = offline_session()

    def describe_failed(**_):
        now = datetime.now(timezone.utc)
        return AWSResponse(None, 200, {}, None), {
            "TrainingJobName": job_name,
            "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:training-job/x",
            "TrainingJobStatus": "Failed",
            "SecondaryStatus": "Failed",
            "FailureReason": reason,
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
            "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
            "StoppingCondition": {"MaxRuntimeInSeconds": 600},
            "CreationTime": now,
            "LastModifiedTime": now,
            "SecondaryStatusTransitions": [{"Status": "Failed", "StartTime": now, "StatusMessage": reason}],
            "ModelArtifacts": {"S3ModelArtifacts": ""},
        }

    session.events.register("before-call.sagemaker.DescribeTrainingJob", describe_failed)
    return session


def test_failed_job_prints_reason_last_log_lines_and_hint(moto, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    job = "gs-ds-env-titanic-failed-1"
    logs = moto.client("logs", REGION)
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=f"{job}/algo-1-1763800000")
    lines = ["Starting training", 'exec: "train": executable file not found in $PATH']
    now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    logs.put_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs",
        logStreamName=f"{job}/algo-1-1763800000",
        logEvents=[{"timestamp": now_ms + i, "message": line} for i, line in enumerate(lines)],
    )
    reason = 'AlgorithmError: framework error: exec: "train": executable file not found in $PATH, exit code: 127'
    moto.reset_recording()
    with pytest.raises(training_job.TrainingFailed) as failed:
        sagemaker_job.run_on_sagemaker(
            settings(instance_type="ml.m5.large"),
            failing_session(job, reason),
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/x:y",
            {"train": "s3://team-bucket/ds/titanic/titanic/train/train.csv"},
            job,
        )
    assert "SageMaker.CreateTrainingJob" in [call.operation for call in moto.calls()]
    message = str(failed.value)
    assert message.startswith(f"training job {job} Failed: AlgorithmError") and "\n" not in message
    assert "no entry point" in message
    assert f"FailureReason: {reason}" in failed.value.details
    assert '  exec: "train": executable file not found in $PATH' in failed.value.details


def test_quota_refused_at_create_gives_one_line_with_the_fix(moto, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    session = offline_session()

    def refuse(**_):
        return AWSResponse(None, 400, {}, None), {
            "Error": {
                "Code": "ResourceLimitExceeded",
                "Message": "The account-level service limit 'ml.m5.large for training job usage' is 0 Instances",
            }
        }

    session.events.register("before-call.sagemaker.CreateTrainingJob", refuse)
    with pytest.raises(
        AwsError,
        match=r"starting training job j-1: ResourceLimitExceeded: .* is 0 Instances "
        r"\(the account quota .* run `inv instance`",
    ):
        sagemaker_job.run_on_sagemaker(
            settings(instance_type="ml.m5.large"), session, "img:tag", {"train": "s3://b/k"}, "j-1"
        )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("CannotPullContainerError: pull access denied for 1234.dkr.ecr.eu-west-1.amazonaws.com/x", "ECR auth"),
        ('ClientError: No S3 objects found under S3 URL "s3://b/p/titanic/train/"', "channel paths"),
        ("ValidationException: Could not assume role arn:aws:iam::123456789012:role/x", "role: SAGEMAKER_ROLE_ARN"),
        ("AlgorithmError: see the secret sauce, exit code: 1", "the training program failed"),
    ],
)
def test_hints_for_the_usual_failures(text, expected):
    assert training_job.hint_for(text).startswith(expected)


def test_an_empty_model_tarball_is_a_failure(moto, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    session = offline_session()
    s3 = moto.client("s3", REGION)
    s3.create_bucket(Bucket="empty-model-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
    empty = tmp_path / "empty.tar.gz"
    tarfile.open(empty, "w:gz").close()  # what SageMaker uploads when /opt/ml/model was left empty
    s3.upload_file(str(empty), "empty-model-bucket", "p/output/job-e/output/model.tar.gz")
    sm = moto.client("sagemaker", REGION)
    sm.create_training_job(
        TrainingJobName="job-e",
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": "i", "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": "s3://empty-model-bucket/p/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    with pytest.raises(training_job.TrainingFailed, match=r"model.tar.gz is empty .* empty /opt/ml/model"):
        sagemaker_results.collect_sagemaker(
            settings(s3_bucket="empty-model-bucket", s3_prefix="p"), session, "job-e", 0.115, tmp_path / "run"
        )


# ---- IAM --------------------------------------------------------------------------------------------------------
UNSCOPABLE = {
    "ecr:GetAuthorizationToken",
    "servicequotas:ListServiceQuotas",
    "servicequotas:ListAWSDefaultServiceQuotas",
    "pricing:GetProducts",
    "cloudwatch:PutMetricData",
    "sagemaker:ListEndpoints",
    "sagemaker:ListPipelines",
    "sagemaker:ListModelPackageGroups",
    "sagemaker:ListModelPackages",
    "scheduler:ListSchedules",
}


def analyze(document: dict, community: bool = False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from parliament import analyze_policy_string
    return analyze_policy_string(json.dumps(document), include_community_auditors=community).findings


def test_iam_policies_are_narrow_and_pass_parliament():
    policies = iam.all_policies(settings())
    operator, execution = policies["operator-policy.json"], policies["execution-role-policy.json"]
    for document in (operator, execution):
        assert analyze(document) == []
        # The community auditors flag what this job cannot do without: an ECR login token, and passing the role.
        assert {f.issue for f in analyze(document, community=True)} <= {
            "CREDENTIALS_EXPOSURE",
            "PERMISSIONS_MANAGEMENT_ACTIONS",
        }
        for statement in document["Statement"]:
            if statement["Resource"] == "*":
                assert set(statement["Action"]) <= UNSCOPABLE, statement
    by_sid = {s["Sid"]: s for s in operator["Statement"]}
    assert by_sid["PassOnlyTheExecutionRoleToSageMaker"]["Resource"] == ROLE
    assert by_sid["PassOnlyTheExecutionRoleToSageMaker"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    assert (
        by_sid["TrainingJobs"]["Resource"] == f"arn:aws:sagemaker:{REGION}:123456789012:training-job/gs-ds-env-titanic*"
    )
    assert by_sid["S3DataAndArtifacts"]["Resource"] == "arn:aws:s3:::team-bucket/ds/titanic/*"
    assert (
        by_sid["EcrPushToThisRepository"]["Resource"]
        == f"arn:aws:ecr:{REGION}:123456789012:repository/gs-ds-env-tabular"
    )
    # Serving: every model, endpoint config, endpoint and transform job under the job-name prefix, nothing else.
    assert by_sid["EndpointsAndTransformJobs"]["Resource"] == [
        f"arn:aws:sagemaker:{REGION}:123456789012:{kind}/gs-ds-env-titanic*"
        for kind in ("model", "endpoint-config", "endpoint", "transform-job")
    ]
    assert {"sagemaker:CreateEndpoint", "sagemaker:DeleteModel", "sagemaker:CreateTransformJob"} <= set(
        by_sid["EndpointsAndTransformJobs"]["Action"]
    )
    execution_sids = {s["Sid"]: s for s in execution["Statement"]}
    assert (
        execution_sids["WriteTransformOutput"]["Resource"] == "arn:aws:s3:::team-bucket/ds/titanic/transform-output/*"
    )
    assert execution_sids["ReadChannels"]["Resource"] == "arn:aws:s3:::team-bucket/ds/titanic/titanic/*"
    assert execution_sids["ReadScriptChannelsAndCode"]["Resource"] == [
        "arn:aws:s3:::team-bucket/ds/titanic/channels/*",
        "arn:aws:s3:::team-bucket/ds/titanic/code/*",
    ]
    assert execution_sids["WriteModel"]["Resource"] == "arn:aws:s3:::team-bucket/ds/titanic/output/*"
    # Processing (inv process): its jobs by name, its uploaded inputs read, its outputs written, its log group.
    assert by_sid["ProcessingJobs"]["Resource"] == (
        f"arn:aws:sagemaker:{REGION}:123456789012:processing-job/gs-ds-env-titanic*"
    )
    assert {"sagemaker:CreateProcessingJob", "sagemaker:StopProcessingJob"} <= set(by_sid["ProcessingJobs"]["Action"])
    assert (
        execution_sids["ReadProcessingInputs"]["Resource"] == "arn:aws:s3:::team-bucket/ds/titanic/processing-input/*"
    )
    assert execution_sids["WriteProcessingOutputs"]["Resource"] == "arn:aws:s3:::team-bucket/ds/titanic/processing/*"
    assert (
        f"arn:aws:logs:{REGION}:123456789012:log-group:/aws/sagemaker/ProcessingJobs:log-stream:*"
        in (execution_sids["WriteJobLogs"]["Resource"])
    )
    # Pipelines: the operator's calls on this project's pipelines, the scheduler's one call, its own role passed only to
    # EventBridge Scheduler; the steps' jobs (named by SageMaker Pipelines) are the execution role's.
    assert by_sid["Pipelines"]["Resource"] == f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/gs-ds-env-titanic*"
    assert by_sid["PipelineSchedules"]["Resource"] == (
        f"arn:aws:scheduler:{REGION}:123456789012:schedule/default/gs-ds-env-titanic*"
    )
    assert by_sid["PassOnlyTheSchedulerRoleToEventBridgeScheduler"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}
    }
    (start,) = policies["scheduler-role-policy.json"]["Statement"]
    assert (
        start["Action"] == ["sagemaker:StartPipelineExecution"] and start["Resource"] == by_sid["Pipelines"]["Resource"]
    )
    (scheduler_trust,) = policies["scheduler-role-trust-policy.json"]["Statement"]
    assert scheduler_trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert execution_sids["IdleWatcherStopsItsOwnNotebookInstance"]["Resource"] == (
        f"arn:aws:sagemaker:{REGION}:123456789012:notebook-instance/gs-ds-env-titanic*"
    )
    assert execution_sids["PipelineOutputs"]["Resource"] == "arn:aws:s3:::team-bucket/ds/titanic/pipelines/*"
    assert (
        f"arn:aws:sagemaker:{REGION}:123456789012:training-job/pipelines-*"
        in execution_sids["PipelineSteps"]["Resource"]
    )
    (trust,) = policies["execution-role-trust-policy.json"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}


def test_iam_policy_task_writes_the_files(tmp_path):
    project = clone_project(tmp_path / "project")
    out = tmp_path / "policies"
    out.mkdir()
    env = tool_env(TARGET="local", S3_BUCKET="team-bucket", SAGEMAKER_ROLE_ARN=ROLE, AWS_REGION=REGION)
    result = subprocess.run(
        [str(REPO / ".venv/bin/inv"), "iam-policy", "--out", str(out)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "execution-role-policy.json",
        "execution-role-trust-policy.json",
        "operator-policy.json",
        "scheduler-role-policy.json",
        "scheduler-role-trust-policy.json",
    ]
    assert json.loads((out / "operator-policy.json").read_text()) == iam.operator_policy(
        settings(s3_prefix="gs-ds-env", ecr_repository="gs-ds-env-tabular", base_job_name="gs-ds-env"), "123456789012"
    )
    missing = subprocess.run(
        [str(REPO / ".venv/bin/inv"), "iam-policy"],
        cwd=project,
        capture_output=True,
        text=True,
        env=tool_env(S3_BUCKET="", SAGEMAKER_ROLE_ARN=ROLE),
    )
    assert missing.returncode == 2
    assert (
        missing.stderr.strip() == "error: S3_BUCKET is missing: set it in .env (a bucket name: 3-63 lowercase "
        "letters, digits, '.', '-', no '..', not an IP address)"
    )


# ---- the push script on its own: immutable tags, and the login password never printed ---------------------------
@pytest.mark.docker
def test_push_script_immutable_repository(tmp_path, moto, registry, base_image):
    repo = copy_repo(tmp_path / "repo", "bin", "docker", "training", "themes", ".dockerignore")
    env = tool_env(**moto.env(), DOCKER_CONFIG=str(tmp_path / "docker-config"))
    command = [
        str(repo / "bin/gs-env-docker-build-push.sh"),
        "--py",
        "3.11",
        "--base-image",
        base_image,
        "--registry",
        registry.host,
        "--immutable",
        "tabular",
        "123456789012",
        REGION,
        "immutable-test",
        "tabular_311",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert registry.tags("immutable-test") == [outputs["CONTENT_TAG"]]  # no moving tag on an immutable repository
    assert outputs["PUSHED"] == outputs["CONTENT_TAG"]
    assert outputs["IMAGE_DIGEST"] == registry.digest("immutable-test", outputs["CONTENT_TAG"])
    (described,) = moto.client("ecr", REGION).describe_repositories(repositoryNames=["immutable-test"])["repositories"]
    assert described["imageTagMutability"] == "IMMUTABLE" and described["imageScanningConfiguration"]["scanOnPush"]
    token = moto.client("ecr", REGION).get_authorization_token()["authorizationData"][0]["authorizationToken"]
    password = base64.b64decode(token).decode().split(":", 1)[1]
    assert password not in result.stdout + result.stderr

    again = subprocess.run(command, capture_output=True, text=True, env=env)
    assert again.returncode == 0 and "nothing to push" in again.stderr
    assert dict(line.split("=", 1) for line in again.stdout.splitlines() if "=" in line)["PUSHED"] == ""


# ---- hung services: a frozen endpoint and a trickling download are bounded -----------------------------------
@pytest.fixture
def frozen_server():
    """Accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    for connection in held:
        connection.close()
    server.close()


def test_a_frozen_aws_endpoint_fails_with_one_line_naming_it(frozen_server, monkeypatch):
    # The shipped bound: attempts x (connect + read) stays about a minute, not botocore's 60 s read per attempt.
    attempts = aws.RETRIES.retries["total_max_attempts"]  # the first request included
    assert attempts * (aws.RETRIES.connect_timeout + aws.RETRIES.read_timeout) <= 90
    monkeypatch.setenv("AWS_ENDPOINT_URL", frozen_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    from botocore.config import Config

    # RETRIES is made on first use and read from there by every client: shorten it where the clients read it.
    monkeypatch.setitem(aws_calls._botocore(), "RETRIES", aws.RETRIES.merge(Config(read_timeout=1, connect_timeout=1)))
    import boto3

    with pytest.raises(aws.AwsError) as failed:
        aws.account_id(boto3.Session(region_name="us-east-1"))
    line = str(failed.value)
    assert "\n" not in line and frozen_server in line and "Read timeout" in line and "AWS_ENDPOINT_URL" in line


def test_an_ecr_uri_in_a_log_line_does_not_trigger_the_ecr_hint():
    log = (
        "Pulled 123456789012.dkr.ecr.us-east-1.amazonaws.com/gs-ds-env:tabular_312-abc\n"
        "Traceback (most recent call last):\nValueError: bad input"
    )
    assert hint_for(log).startswith("the training program failed")
    assert hint_for("CannotPullContainerError: pull access denied").startswith("ECR auth or image")


def test_one_process_parses_the_sagemaker_model_once_and_keeps_each_sessions_credentials(tmp_path):
    """botocore gives each session its own loader: the local job's session, the one the SDK's Estimator makes from
    boto3's default and the SageMaker target's each parsed the ~3 MB SageMaker model again after the SDK's import."""
    (tmp_path / "config").write_text("[default]\nregion = eu-west-1\n")
    (tmp_path / "credentials").write_text("[default]\naws_access_key_id = AKIAFROMFILE\naws_secret_access_key = x\n")
    program = """
import botocore.loaders
parsed = []
read = botocore.loaders.JSONFileLoader.load_file
def counting(self, file_path):
    if "/sagemaker/" in file_path and file_path.endswith("service-2"):
        parsed.append(file_path)
    return read(self, file_path)
botocore.loaders.JSONFileLoader.load_file = counting

from gs_ds_env import aws, settings
from gs_ds_env.errors import GsError
from gs_ds_env.job.local_job import session_without_credentials
from gs_ds_env.sdk import SDK_CONFIG, sagemaker
sdk = sagemaker()
print("parsed by the import", len(parsed))  # its workflow module reads the model with its own loader
parsed.clear()
from sagemaker.local import LocalSession
local = LocalSession(boto_session=session_without_credentials("eu-west-1"), sagemaker_config=SDK_CONFIG)
sdk.estimator.Estimator(image_uri="x:y", role="arn:aws:iam::123456789012:role/r", instance_count=1,
    instance_type="local", sagemaker_session=local, output_path="file:///tmp/o")
remote = aws.session(settings.load_settings(aws_region="eu-west-1"))
remote.client("sagemaker")
print("parsed since", len(parsed))
print("local job", local.boto_session.get_credentials())
print("sagemaker target", remote.get_credentials().access_key)
import boto3
print("default session", boto3.DEFAULT_SESSION.get_credentials().access_key)
try:
    aws.session(settings.load_settings(aws_profile="nope"))
except GsError as error:
    print(error)
"""
    env = tool_env(
        AWS_CONFIG_FILE=str(tmp_path / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
        SAGEMAKER_SUPPRESS_V2_WARNING="1",
        WORKING_DIR=str(tmp_path / "work"),
    )
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(key, None)
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines()[-6:] == [
        "parsed by the import 2",
        "parsed since 0",
        "local job None",  # local mode copies no keys into the container
        "sagemaker target AKIAFROMFILE",
        "default session AKIAFROMFILE",
        "AWS_PROFILE='nope' is not in ~/.aws/config: run `aws configure --profile nope` or leave AWS_PROFILE empty",
    ]
