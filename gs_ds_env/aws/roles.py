"""The roles AWS services assume for this project, their policies and trust: SageMaker's execution role
(SAGEMAKER_ROLE_ARN: jobs, endpoints, pipelines) and EventBridge Scheduler's role (SCHEDULER_ROLE_ARN)."""

from __future__ import annotations

from gs_ds_env.aws.arns import Names
from gs_ds_env.aws.arns import policy as _policy
from gs_ds_env.aws.arns import statement as _statement
from gs_ds_env.settings import Settings


def execution_role_policy(settings: Settings, account: str) -> dict:
    """What SageMaker, acting as SAGEMAKER_ROLE_ARN, needs to run the job."""
    names = Names(settings, account)
    return _policy(
        *_execution_data(names), *_execution_pipelines(settings, names), *_execution_image_logs_and_metrics(names)
    )


def _execution_data(names: Names) -> list[dict]:
    """The channels, code, models and transform and processing data it reads and writes under the prefix."""
    return [
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
    ]


def _execution_pipelines(settings: Settings, names: Names) -> list[dict]:
    """The idle watcher's own notebook instance; what a pipeline running as this role starts and reads."""
    return [
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
    ]


def _execution_image_logs_and_metrics(names: Names) -> list[dict]:
    """The image pulled; the jobs', endpoints' and transforms' logs and metrics."""
    return [
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
    ]


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
    return _trust("sagemaker.amazonaws.com", account, Names(settings, account).sagemaker_any)


def scheduler_role_policy(settings: Settings, account: str) -> dict:
    """What EventBridge Scheduler, acting as SCHEDULER_ROLE_ARN, needs to start a scheduled pipeline."""
    names = Names(settings, account)
    return _policy(_statement("StartThisProjectsPipelines", ["sagemaker:StartPipelineExecution"], names.pipelines))


def scheduler_trust_policy(settings: Settings, account: str) -> dict:
    """Only EventBridge Scheduler, for this account's schedules of this project, may assume the scheduler role."""
    return _trust("scheduler.amazonaws.com", account, Names(settings, account).schedules)
