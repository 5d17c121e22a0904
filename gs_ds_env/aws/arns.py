"""What this project's IAM policies are made of: the ARNs and S3 prefixes they are scoped to, for one .env and
account (every name the project gives what it creates on AWS, read from the settings once), and the shape of a
statement and a policy."""

from __future__ import annotations

from gs_ds_env.aws.calls import LOG_GROUP, PROCESSING_LOG_GROUP
from gs_ds_env.data import s3_data
from gs_ds_env.settings import Settings


def statement(sid: str, actions: list[str], resources: list[str] | str, condition: dict | None = None) -> dict:
    statement = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


class Names:
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
