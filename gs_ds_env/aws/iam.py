"""`inv iam-policy`: least-privilege policies for exactly this bucket/prefix, repository, role and job prefix."""

from __future__ import annotations

import json
import re

from gs_ds_env.aws import LOG_GROUP, PROCESSING_LOG_GROUP
from gs_ds_env.data import s3_data
from gs_ds_env.settings import Settings


def _statement(sid: str, actions: list[str], resources: list[str] | str, condition: dict | None = None) -> dict:
    statement = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def _policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def account_of(role_arn: str) -> str:
    return re.search(r":iam::(\d{12}):", role_arn).group(1)


class _Names:
    """The ARNs and S3 prefixes the policies are scoped to, for one .env and account."""

    def __init__(self, settings: Settings, account: str) -> None:
        self.settings = settings
        partition = settings.sagemaker_role_arn.split(":")[1]
        region = settings.aws_region
        self.bucket = f"arn:{partition}:s3:::{settings.s3_bucket}"
        self.objects = self.under()
        self.repository = f"arn:{partition}:ecr:{region}:{account}:repository/{settings.ecr_repository}"
        self.jobs = f"arn:{partition}:sagemaker:{region}:{account}:training-job/{settings.base_job_name.lower()}*"
        self.processing_jobs = (
            f"arn:{partition}:sagemaker:{region}:{account}:processing-job/{settings.base_job_name.lower()}*"
        )
        # inv endpoint.deploy / inv transform name the model, endpoint config, endpoint and transform job alike.
        self.serving = [
            f"arn:{partition}:sagemaker:{region}:{account}:{kind}/{settings.base_job_name.lower()}*"
            for kind in ("model", "endpoint-config", "endpoint", "transform-job")
        ]
        # inv studio-image names the SageMaker image and its app image config <base>-<theme>-py<N>.
        prefix = f"arn:{partition}:sagemaker:{region}:{account}"
        base = settings.base_job_name.lower()
        self.studio = [
            f"{prefix}:image/{base}*",
            f"{prefix}:image-version/{base}*/*",
            f"{prefix}:app-image-config/{base}*",
        ]
        self.domains = f"{prefix}:domain/*"  # the domain is named on the command line (--domain-id)
        logs = f"arn:{partition}:logs:{region}:{account}:log-group:/aws/sagemaker"
        self.serving_log_groups = [f"{logs}/Endpoints/{settings.base_job_name.lower()}*", f"{logs}/TransformJobs"]
        self.log_group = f"arn:{partition}:logs:{region}:{account}:log-group:{LOG_GROUP}"
        self.log_streams = f"{self.log_group}:log-stream:{settings.base_job_name.lower()}*"
        self.processing_log_group = f"arn:{partition}:logs:{region}:{account}:log-group:{PROCESSING_LOG_GROUP}"
        # inv pipeline.*: pipelines <base>-<module>, their executions, model package groups (one a pipeline), the
        # EventBridge Scheduler schedule <pipeline>-schedule; jobs a pipeline starts are named pipelines-<id>-...
        self.pipelines = f"{prefix}:pipeline/{base}*"
        self.pipeline_executions = f"{prefix}:pipeline/{base}*/execution/*"
        self.model_groups = f"{prefix}:model-package-group/{base}*"
        self.model_packages = f"{prefix}:model-package/{base}*/*"
        self.schedules = f"arn:{partition}:scheduler:{region}:{account}:schedule/default/{base}*"
        self.pipeline_jobs = [
            f"{prefix}:{kind}/pipelines-*" for kind in ("processing-job", "training-job", "transform-job", "model")
        ]
        self.sagemaker_any = f"arn:{partition}:sagemaker:{region}:{account}:*"
        # The notebook instance the idle watcher may stop: its own (NOTEBOOK_INSTANCE_NAME), else the project's names.
        self.notebook = f"{prefix}:notebook-instance/{settings.notebook_instance_name.lower() or base + '*'}"
        self.scheduler_role = settings.scheduler_role_arn or f"arn:{partition}:iam::{account}:role/{base}-scheduler"
        self.principals = [f"arn:{partition}:iam::{account}:user/*", f"arn:{partition}:iam::{account}:role/*"]

    def s3_prefix(self, *parts: str) -> str:
        return s3_data.key(self.settings, *parts, "*")

    def under(self, *parts: str) -> str:
        return f"{self.bucket}/{self.s3_prefix(*parts)}"


def operator_policy(settings: Settings, account: str) -> dict:
    """What the person or CI running `inv deploy` needs."""
    names = _Names(settings, account)
    return _policy(
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
    )


def execution_role_policy(settings: Settings, account: str) -> dict:
    """What SageMaker, acting as SAGEMAKER_ROLE_ARN, needs to run the job."""
    names = _Names(settings, account)
    return _policy(
        _statement("ReadChannels", ["s3:GetObject"], names.under("titanic")),
        # Script mode: the user's channels (inv train --channel) and the SDK's sourcedir.tar.gz.
        _statement("ReadScriptChannelsAndCode", ["s3:GetObject"], [names.under("channels"), names.under("code")]),
        _statement(
            "ListChannelsAndCheckpoints",
            ["s3:ListBucket"],
            names.bucket,
            {
                "StringLike": {
                    "s3:prefix": [
                        names.s3_prefix("titanic"),
                        names.s3_prefix("channels"),
                        names.s3_prefix("checkpoints"),
                        names.s3_prefix("transform-input"),
                        names.s3_prefix("processing-input"),
                        names.s3_prefix("pipeline-input"),
                        names.s3_prefix("pipeline-code"),
                        names.s3_prefix("pipelines"),
                    ]
                }
            },
        ),
        _statement("WriteModel", ["s3:PutObject"], names.under("output")),
        # Endpoints and transform jobs: the model (trained here or uploaded by inv endpoint.deploy / inv transform),
        # the transform's input, and its output.
        _statement(
            "ReadModelsAndTransformInput",
            ["s3:GetObject"],
            [names.under("output"), names.under("models"), names.under("transform-input")],
        ),
        _statement("WriteTransformOutput", ["s3:PutObject"], names.under("transform-output")),
        # Processing jobs (inv process): their uploaded inputs and code, their outputs. An s3:// input or output
        # of the user's own, outside the prefix, needs its own grant.
        _statement("ReadProcessingInputs", ["s3:GetObject"], names.under("processing-input")),
        _statement("WriteProcessingOutputs", ["s3:PutObject"], names.under("processing")),
        _statement("SpotCheckpoints", ["s3:GetObject", "s3:PutObject"], names.under("checkpoints")),
        # The notebook instance's idle watcher (bin/gs-env-idle-stop.py), when the instance runs as this role.
        _statement("IdleWatcherStopsItsOwnNotebookInstance", ["sagemaker:StopNotebookInstance"], names.notebook),
        # Pipelines (inv pipeline.run) run as this role: their steps' jobs, model and model version, their code,
        # inputs and outputs under the prefix, and the role passed on to the jobs they start.
        _statement(
            "PipelineSteps",
            [
                "sagemaker:CreateProcessingJob",
                "sagemaker:DescribeProcessingJob",
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:CreateTransformJob",
                "sagemaker:DescribeTransformJob",
                "sagemaker:CreateModel",
                "sagemaker:DescribeModel",
                "sagemaker:AddTags",
            ],
            names.pipeline_jobs,
        ),
        _statement(
            "PipelineRegistersModels",
            ["sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage", "sagemaker:AddTags"],
            [names.model_groups, names.model_packages],
        ),
        _statement(
            "PipelineData",
            ["s3:GetObject"],
            [names.under("pipeline-code"), names.under("pipeline-input"), names.under("pipelines")],
        ),
        _statement("PipelineOutputs", ["s3:PutObject"], names.under("pipelines")),
        _statement(
            "PipelinePassesThisRoleToItsJobs",
            ["iam:PassRole"],
            settings.sagemaker_role_arn,
            {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ),
        _statement("EcrLogin", ["ecr:GetAuthorizationToken"], "*"),
        _statement(
            "PullTheImage",
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            names.repository,
        ),
        _statement(
            "CreateJobLogGroup", ["logs:CreateLogGroup"], [f"{names.log_group}:*", f"{names.processing_log_group}:*"]
        ),
        _statement(
            "WriteJobLogs",
            ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            [f"{names.log_group}:log-stream:*", f"{names.processing_log_group}:log-stream:*"],
        ),
        _statement(
            "EndpointAndTransformLogs",
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            [f"{group}:*" for group in names.serving_log_groups],
        ),
        # PutMetricData has no resource-level form; the namespace condition narrows it.
        _statement(
            "JobMetrics",
            ["cloudwatch:PutMetricData"],
            "*",
            {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
        ),
    )


def _trust(service: str, account: str, source_arn: str) -> dict:
    """Only `service`, acting for this account on `source_arn` (confused-deputy guard), may assume the role."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": account}, "ArnLike": {"aws:SourceArn": source_arn}},
            }
        ],
    }


def trust_policy(settings: Settings, account: str) -> dict:
    """Only SageMaker, acting for this account, may assume the execution role."""
    return _trust("sagemaker.amazonaws.com", account, _Names(settings, account).sagemaker_any)


def scheduler_role_policy(settings: Settings, account: str) -> dict:
    """What EventBridge Scheduler, acting as SCHEDULER_ROLE_ARN, needs to start a scheduled pipeline."""
    names = _Names(settings, account)
    return _policy(_statement("StartThisProjectsPipelines", ["sagemaker:StartPipelineExecution"], names.pipelines))


def scheduler_trust_policy(settings: Settings, account: str) -> dict:
    """Only EventBridge Scheduler, for this account's schedules of this project, may assume the scheduler role."""
    return _trust("scheduler.amazonaws.com", account, _Names(settings, account).schedules)


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
