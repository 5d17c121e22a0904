"""What every AWS call shares: a failed job read as one line with its reason, log lines and hint; a frozen endpoint
bounded by the retries and timeouts; one parse of the SageMaker model per process.

Failed jobs go to moto_server for real, except DescribeTrainingJob, which moto can only answer with Completed: a
botocore before-call hook answers Failed instead.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tarfile
import threading
from datetime import datetime, timezone

import boto3
import pytest
from aws_fakes import REGION, ROLE, offline_session, offline_settings
from botocore.awsrequest import AWSResponse
from conftest import REPO, tool_env

from gs_ds_env import aws
from gs_ds_env.aws import AwsError
from gs_ds_env.aws import calls as aws_calls
from gs_ds_env.job import sagemaker_job, sagemaker_results, training_job
from gs_ds_env.job.training_job import hint_for


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
            offline_settings(instance_type="ml.m5.large"),
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
            offline_settings(instance_type="ml.m5.large"), session, "img:tag", {"train": "s3://b/k"}, "j-1"
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
            offline_settings(s3_bucket="empty-model-bucket", s3_prefix="p"), session, "job-e", 0.115, tmp_path / "run"
        )


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
