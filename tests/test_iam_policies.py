"""The IAM policies `inv iam-policy` writes: narrow (scoped to the project's bucket, repository and roles), passing
parliament's auditors, and written as files.
"""

from __future__ import annotations

import json
import subprocess
import warnings

from aws_fakes import REGION, ROLE, offline_settings
from conftest import REPO, clone_project, tool_env

from gs_ds_env.aws import iam

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
    policies = iam.all_policies(offline_settings())
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
        offline_settings(s3_prefix="gs-ds-env", ecr_repository="gs-ds-env-tabular", base_job_name="gs-ds-env"),
        "123456789012",
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
