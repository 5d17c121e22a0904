"""`inv iam-policy`: least-privilege policies for exactly this bucket/prefix, repository, role and job prefix: the
operator's (here), the roles' (roles.py), scoped by the names in arns.py."""

from __future__ import annotations

import json
import re

from gs_ds_env.aws.arns import Names
from gs_ds_env.aws.arns import policy as _policy
from gs_ds_env.aws.arns import statement as _statement
from gs_ds_env.aws.roles import execution_role_policy, scheduler_role_policy, scheduler_trust_policy, trust_policy
from gs_ds_env.settings import Settings


def account_of(role_arn: str) -> str:
    return re.search(r":iam::(\d{12}):", role_arn).group(1)


def operator_policy(settings: Settings, account: str) -> dict:
    """What the person or CI running `inv deploy` needs."""
    names = Names(settings, account)
    return _policy(
        *_operator_image_and_data(names),
        *_operator_jobs(names),
        *_operator_pipelines(names),
        *_operator_serving_and_studio(names),
        *_operator_reads_and_roles(settings, names),
    )


def _operator_image_and_data(names: Names) -> list[dict]:
    """The image pushed to this repository; the data and artifacts under the bucket's prefix."""
    return [
        # ECR issues login tokens account-wide: this action has no resource-level form.
        _statement("EcrLogin", ["ecr:GetAuthorizationToken"], "*"),
        _statement(
            "EcrPushToThisRepository",
            [
                "ecr:CreateRepository",
                "ecr:DescribeRepositories",
                "ecr:DescribeImages",
                "ecr:BatchCheckLayerAvailability",
                "ecr:InitiateLayerUpload",
                "ecr:UploadLayerPart",
                "ecr:CompleteLayerUpload",
                "ecr:PutImage",
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
            ],
            names.repository,
        ),
        _statement(
            "S3Bucket",
            [
                "s3:CreateBucket",
                "s3:ListBucket",
                "s3:GetBucketLocation",
                "s3:PutBucketPublicAccessBlock",
                "s3:PutEncryptionConfiguration",
            ],
            names.bucket,
        ),
        _statement("S3DataAndArtifacts", ["s3:GetObject", "s3:PutObject"], names.objects),
    ]


def _operator_jobs(names: Names) -> list[dict]:
    """Training and processing jobs."""
    return [
        _statement(
            "TrainingJobs",
            [
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:StopTrainingJob",
                "sagemaker:AddTags",
            ],
            names.jobs,
        ),
        # inv process: processing jobs, named like training jobs (<base>-<theme>-<script>-<timestamp>).
        _statement(
            "ProcessingJobs",
            [
                "sagemaker:CreateProcessingJob",
                "sagemaker:DescribeProcessingJob",
                "sagemaker:StopProcessingJob",
                "sagemaker:AddTags",
            ],
            names.processing_jobs,
        ),
    ]


def _operator_pipelines(names: Names) -> list[dict]:
    """Pipelines, their executions, steps and schedules; the model registry."""
    return [
        # inv pipeline.run|list|delete: the pipeline and its executions; inv model.*: its model package group.
        _statement(
            "Pipelines",
            [
                "sagemaker:CreatePipeline",
                "sagemaker:UpdatePipeline",
                "sagemaker:DescribePipeline",
                "sagemaker:DeletePipeline",
                "sagemaker:StartPipelineExecution",
                "sagemaker:ListPipelineExecutions",
                "sagemaker:AddTags",
                "sagemaker:ListTags",
            ],
            names.pipelines,
        ),
        _statement(
            "PipelineExecutions",
            [
                "sagemaker:DescribePipelineExecution",
                "sagemaker:ListPipelineExecutionSteps",
                "sagemaker:StopPipelineExecution",
            ],
            names.pipeline_executions,
        ),
        _statement(
            "ModelRegistry",
            [
                "sagemaker:CreateModelPackageGroup",
                "sagemaker:DescribeModelPackageGroup",
                "sagemaker:DescribeModelPackage",
                "sagemaker:UpdateModelPackage",
                "sagemaker:AddTags",
            ],
            [names.model_groups, names.model_packages],
        ),
        # A pipeline's steps, read for the record (their jobs are named by SageMaker Pipelines).
        _statement(
            "PipelineStepJobs",
            ["sagemaker:DescribeProcessingJob", "sagemaker:DescribeTrainingJob"],
            names.pipeline_jobs[:2],
        ),
        # inv pipeline.schedule: the SDK's PipelineSchedule, an EventBridge Scheduler schedule.
        _statement(
            "PipelineSchedules",
            [
                "scheduler:CreateSchedule",
                "scheduler:UpdateSchedule",
                "scheduler:GetSchedule",
                "scheduler:DeleteSchedule",
            ],
            names.schedules,
        ),
    ]


def _operator_serving_and_studio(names: Names) -> list[dict]:
    """Endpoints, transform jobs, the workspace as a Studio image."""
    return [
        # Serving: a trained model as an endpoint (inv endpoint.*) or a batch transform (inv transform).
        _statement(
            "EndpointsAndTransformJobs",
            [
                "sagemaker:CreateModel",
                "sagemaker:DescribeModel",
                "sagemaker:DeleteModel",
                "sagemaker:CreateEndpointConfig",
                "sagemaker:DescribeEndpointConfig",
                "sagemaker:DeleteEndpointConfig",
                "sagemaker:CreateEndpoint",
                "sagemaker:DescribeEndpoint",
                "sagemaker:DeleteEndpoint",
                "sagemaker:InvokeEndpoint",
                "sagemaker:CreateTransformJob",
                "sagemaker:DescribeTransformJob",
                "sagemaker:StopTransformJob",
                "sagemaker:AddTags",
                "sagemaker:ListTags",
            ],
            names.serving,
        ),
        # inv studio-image: the workspace image as a Studio image (CreateImage passes the execution role: the
        # PassRole statement below covers it), and --domain-id's domain offering it.
        _statement(
            "StudioImages",
            [
                "sagemaker:CreateImage",
                "sagemaker:DescribeImage",
                "sagemaker:DeleteImage",
                "sagemaker:CreateImageVersion",
                "sagemaker:DescribeImageVersion",
                "sagemaker:CreateAppImageConfig",
                "sagemaker:DescribeAppImageConfig",
                "sagemaker:UpdateAppImageConfig",
                "sagemaker:DeleteAppImageConfig",
                "sagemaker:AddTags",
                "sagemaker:ListTags",
            ],
            names.studio,
        ),
        _statement("StudioDomain", ["sagemaker:DescribeDomain", "sagemaker:UpdateDomain"], names.domains),
    ]


def _operator_reads_and_roles(settings: Settings, names: Names) -> list[dict]:
    """Status, lists, logs and the instance evidence; the two roles passed on; preflight's reads."""
    return [
        # inv status: the notebook instance it runs on (type, status).
        _statement("StatusReadsTheNotebookInstance", ["sagemaker:DescribeNotebookInstance"], names.notebook),
        # The list calls have no resource-level form (the tasks filter by name and tag).
        _statement(
            "ListEndpointsPipelinesModelsSchedules",
            [
                "sagemaker:ListEndpoints",
                "sagemaker:ListPipelines",
                "sagemaker:ListModelPackageGroups",
                "sagemaker:ListModelPackages",
                "scheduler:ListSchedules",
            ],
            "*",
        ),
        _statement(
            "ReadJobLogs", ["logs:DescribeLogStreams"], [f"{names.log_group}:*", f"{names.processing_log_group}:*"]
        ),
        _statement(
            "ReadJobLogEvents",
            ["logs:GetLogEvents"],
            [names.log_streams, f"{names.processing_log_group}:log-stream:{settings.base_job_name.lower()}*"],
        ),
        _statement(
            "PassOnlyTheExecutionRoleToSageMaker",
            ["iam:PassRole"],
            settings.sagemaker_role_arn,
            {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ),
        _statement(
            "PassOnlyTheSchedulerRoleToEventBridgeScheduler",
            ["iam:PassRole"],
            names.scheduler_role,
            {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
        ),
        # Preflight: read the role's trust policy; simulate whether the caller may pass it.
        _statement("PreflightReadTheExecutionRole", ["iam:GetRole"], settings.sagemaker_role_arn),
        _statement("PreflightSimulatePassRole", ["iam:SimulatePrincipalPolicy"], names.principals),
        # Quota and price reads have no resource-level form either.
        _statement(
            "InstanceEvidence",
            ["servicequotas:ListServiceQuotas", "servicequotas:ListAWSDefaultServiceQuotas", "pricing:GetProducts"],
            "*",
        ),
    ]


def all_policies(settings: Settings, account: str | None = None) -> dict[str, dict]:
    account = account or account_of(settings.sagemaker_role_arn)
    return {
        "operator-policy.json": operator_policy(settings, account),
        "execution-role-policy.json": execution_role_policy(settings, account),
        "execution-role-trust-policy.json": trust_policy(settings, account),
        "scheduler-role-policy.json": scheduler_role_policy(settings, account),
        "scheduler-role-trust-policy.json": scheduler_trust_policy(settings, account),
    }


def render(policies: dict[str, dict]) -> str:
    return "\n\n".join(f"# {name}\n{json.dumps(doc, indent=2)}" for name, doc in policies.items())
