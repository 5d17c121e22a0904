"""`inv doctor --preflight`: will a paid training job work? Cheap, read-only checks with the caller's credentials,
then the image itself on a 20-row sample of the channels, before anything is pushed or paid for.

Each failure is one line naming the cause and the fix (the Check rows of `inv doctor`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from gs_ds_env import aws
from gs_ds_env.aws import instance
from gs_ds_env.data import CHANNELS, s3_data
from gs_ds_env.errors import GsError
from gs_ds_env.ops.checks import FAIL, OK, WARN, Check
from gs_ds_env.settings import Settings

if TYPE_CHECKING:
    import boto3


class PreflightFailed(GsError):
    """A preflight check failed before anything was pushed or paid for; the message lists the failed lines."""


SAMPLE_ROWS = 20
SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"


def _trusts_sagemaker(document: dict | str) -> bool:
    if isinstance(document, str):
        document = json.loads(document)
    for statement in document.get("Statement", []):
        services = (statement.get("Principal") or {}).get("Service", [])
        services = [services] if isinstance(services, str) else services
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if statement.get("Effect") == "Allow" and SAGEMAKER_PRINCIPAL in services and "sts:AssumeRole" in actions:
            return True
    return False


def identity_check(boto_session: boto3.Session) -> tuple[Check, str]:
    try:
        caller = aws.client(boto_session, "sts").get_caller_identity()
    except (aws.ClientError, aws.BotoCoreError) as error:
        return Check(
            "preflight",
            "caller",
            FAIL,
            str(aws.explain(error, "sts:GetCallerIdentity")),
            "configure credentials (aws configure, AWS_PROFILE, or the notebook's role)",
        ), ""
    return Check("preflight", "caller", OK, f"{caller['Arn']} (account {caller['Account']})"), caller["Arn"]


def ecr_checks(settings: Settings, boto_session: boto3.Session) -> list[Check]:
    ecr = aws.client(boto_session, "ecr")
    checks = []
    try:
        ecr.describe_repositories(repositoryNames=[settings.ecr_repository])
        checks.append(Check("preflight", "ECR repository", OK, f"{settings.ecr_repository} exists"))
    except aws.ClientError as error:
        if aws.error_code(error) == "RepositoryNotFoundException":
            checks.append(
                Check(
                    "preflight",
                    "ECR repository",
                    OK,
                    f"{settings.ecr_repository} does not exist yet: the push creates it (ecr:CreateRepository)",
                )
            )
        else:
            checks.append(
                Check(
                    "preflight",
                    "ECR repository",
                    FAIL,
                    str(aws.explain(error, "ecr:DescribeRepositories")),
                    "attach iam/operator-policy.json (inv iam-policy)",
                )
            )
    except aws.BotoCoreError as error:
        checks.append(Check("preflight", "ECR repository", FAIL, str(aws.explain(error, "ecr:DescribeRepositories"))))
    try:
        ecr.get_authorization_token()
        checks.append(Check("preflight", "ECR login", OK, "ecr:GetAuthorizationToken allowed"))
    except (aws.ClientError, aws.BotoCoreError) as error:
        checks.append(
            Check(
                "preflight",
                "ECR login",
                FAIL,
                str(aws.explain(error, "ecr:GetAuthorizationToken")),
                "the push needs it: attach iam/operator-policy.json (inv iam-policy)",
            )
        )
    return checks


def role_checks(settings: Settings, boto_session: boto3.Session, caller_arn: str) -> list[Check]:
    role_name = settings.sagemaker_role_arn.split(":role/", 1)[1].rsplit("/", 1)[-1]
    iam = aws.client(boto_session, "iam")
    try:
        role = iam.get_role(RoleName=role_name)["Role"]
    except aws.ClientError as error:
        if aws.error_code(error) == "NoSuchEntity":
            return [
                Check(
                    "preflight",
                    "execution role",
                    FAIL,
                    f"role {settings.sagemaker_role_arn} does not exist",
                    "create it with iam/execution-role-trust-policy.json and attach "
                    "iam/execution-role-policy.json (inv iam-policy --out iam)",
                )
            ]
        return [Check("preflight", "execution role", WARN, f"{aws.explain(error, 'iam:GetRole')}: not verified")]
    except aws.BotoCoreError as error:
        return [Check("preflight", "execution role", WARN, f"{aws.explain(error, 'iam:GetRole')}: not verified")]
    if not _trusts_sagemaker(role.get("AssumeRolePolicyDocument", {})):
        return [
            Check(
                "preflight",
                "execution role",
                FAIL,
                f"role {role_name} does not trust {SAGEMAKER_PRINCIPAL}: SageMaker cannot assume it",
                "replace its trust policy with iam/execution-role-trust-policy.json (inv iam-policy --out iam)",
            )
        ]
    checks = [Check("preflight", "execution role", OK, f"{role_name} exists and trusts {SAGEMAKER_PRINCIPAL}")]
    try:
        result = iam.simulate_principal_policy(
            PolicySourceArn=caller_arn, ActionNames=["iam:PassRole"], ResourceArns=[settings.sagemaker_role_arn]
        )
        decision = result["EvaluationResults"][0]["EvalDecision"]
        if decision == "allowed":
            checks.append(Check("preflight", "pass role", OK, f"the caller may pass {role_name} (policy simulation)"))
        else:
            checks.append(
                Check(
                    "preflight",
                    "pass role",
                    FAIL,
                    f"iam:PassRole on {role_name} is {decision} for the caller",
                    "attach iam/operator-policy.json (inv iam-policy)",
                )
            )
    except aws.CALL_ERRORS as error:
        checks.append(
            Check(
                "preflight", "pass role", WARN, f"not verified (policy simulation unavailable: {aws.error_code(error)})"
            )
        )
    return checks


def bucket_checks(settings: Settings, boto_session: boto3.Session) -> list[Check]:
    s3 = aws.client(boto_session, "s3")
    try:
        location = s3.get_bucket_location(Bucket=settings.s3_bucket).get("LocationConstraint") or "us-east-1"
    except aws.ClientError as error:
        if aws.error_code(error) in {"NoSuchBucket", "404"}:
            return [
                Check(
                    "preflight",
                    "bucket",
                    OK,
                    f"{settings.s3_bucket} does not exist yet: `inv data` creates it in {settings.aws_region}",
                )
            ]
        return [
            Check(
                "preflight",
                "bucket",
                FAIL,
                str(aws.explain(error, "s3:GetBucketLocation")),
                "attach iam/operator-policy.json (inv iam-policy), or check S3_BUCKET",
            )
        ]
    except aws.BotoCoreError as error:
        return [Check("preflight", "bucket", FAIL, str(aws.explain(error, "s3:GetBucketLocation")))]
    if location != settings.aws_region:
        return [
            Check(
                "preflight",
                "bucket",
                FAIL,
                f"{settings.s3_bucket} is in {location}, the job runs in {settings.aws_region}",
                "use a bucket in AWS_REGION (or set AWS_REGION to the bucket's)",
            )
        ]
    bucket = Check("preflight", "bucket", OK, f"{settings.s3_bucket} in {location}")
    return [bucket, *(_channel_check(settings, s3, channel) for channel in CHANNELS)]


def _channel_check(settings: Settings, s3, channel: str) -> Check:
    """The channel's object is readable, or not uploaded yet (the deploy uploads it)."""
    key = s3_data.object_key(settings, channel)
    try:
        s3.head_object(Bucket=settings.s3_bucket, Key=key)
    except aws.ClientError as error:
        if aws.error_code(error) in {"404", "NoSuchKey"}:
            where = f"not uploaded yet: the deploy uploads s3://{settings.s3_bucket}/{key}"
            return Check("preflight", f"channel {channel}", OK, where)
        return Check(
            "preflight", f"channel {channel}", FAIL, str(aws.explain(error, "s3:HeadObject")),
            "attach iam/operator-policy.json (inv iam-policy)",
        )  # fmt: skip
    return Check("preflight", f"channel {channel}", OK, f"s3://{settings.s3_bucket}/{key} readable")


def quota_check(settings: Settings, boto_session: boto3.Session, job: str = "training") -> Check:
    quotas, source = instance.job_quotas(aws.client(boto_session, "service-quotas", config=aws.QUICK), job)
    if quotas is None:
        return Check("preflight", "instance quota", WARN, f"not verified: {source}")
    wanted = settings.instance_type
    if wanted == "auto":
        usable = sorted(name for name, value in quotas.items() if value > 0)
        if not usable:
            return Check(
                "preflight",
                "instance quota",
                FAIL,
                f"no {job} instance type has a quota above 0 in {settings.aws_region}",
                f"request one in Service Quotas (e.g. ml.m5.large for {job} job usage)",
            )
        return Check("preflight", "instance quota", OK, f"{len(usable)} {job} type(s) with a quota above 0")
    if quotas.get(wanted, 0) <= 0:
        return Check(
            "preflight",
            "instance quota",
            FAIL,
            f"{wanted} has a {job} quota of 0 in {settings.aws_region}",
            "request an increase in Service Quotas, or INSTANCE_TYPE=auto",
        )
    return Check("preflight", "instance quota", OK, f"{wanted}: quota {quotas[wanted]:g}")


def cheap_checks(settings: Settings, boto_session: boto3.Session, job: str = "training") -> list[Check]:
    """Read-only AWS calls, each cheap: no build, no upload, no job (`job`: whose instance quota counts)."""
    caller, caller_arn = identity_check(boto_session)
    if caller.status == FAIL:
        return [caller]
    return (
        [caller]
        + ecr_checks(settings, boto_session)
        + role_checks(settings, boto_session, caller_arn)
        + bucket_checks(settings, boto_session)
        + [quota_check(settings, boto_session, job)]
    )


def _sample_job(settings: Settings, root: Path, channels: dict[str, Path]) -> dict:
    """/opt/ml as SageMaker lays it out, under `root`, with the first SAMPLE_ROWS rows of each channel: the
    container's volumes."""
    volumes = {}
    for channel, folder in channels.items():
        (root / "data" / channel).mkdir(parents=True)
        for csv in sorted(Path(folder).glob("*.csv")):
            lines = csv.read_text().splitlines(keepends=True)[: SAMPLE_ROWS + 1]
            (root / "data" / channel / csv.name).write_text("".join(lines))
        volumes[str(root / "data" / channel)] = {"bind": f"/opt/ml/input/data/{channel}", "mode": "ro"}
    (root / "config").mkdir()
    (root / "config/hyperparameters.json").write_text(json.dumps(settings.hyperparameters))
    (root / "config/inputdataconfig.json").write_text(json.dumps({c: {"ContentType": "text/csv"} for c in channels}))
    (root / "model").mkdir()
    (root / "output").mkdir()
    volumes[str(root / "config")] = {"bind": "/opt/ml/input/config", "mode": "ro"}
    volumes[str(root / "model")] = {"bind": "/opt/ml/model", "mode": "rw"}
    volumes[str(root / "output")] = {"bind": "/opt/ml/output", "mode": "rw"}
    return volumes


def image_check(settings: Settings, image_ref: str, channels: dict[str, Path]) -> Check:
    """Run the image's `train` as SageMaker would, on the first SAMPLE_ROWS rows of each channel: it must exit 0
    and leave a non-empty /opt/ml/model."""
    from docker.errors import ContainerError, DockerException

    import docker

    with tempfile.TemporaryDirectory(prefix="gs-preflight-") as scratch:
        root = Path(scratch)
        volumes = _sample_job(settings, root, channels)
        try:
            docker.from_env().containers.run(
                image_ref,
                ["train"],
                volumes=volumes,
                remove=True,
                environment={"TRAINING_JOB_NAME": "gs-ds-env-preflight"},
            )
        except ContainerError as error:
            failure = root / "output/failure"
            reason = (
                failure.read_text().strip().splitlines()[0]
                if failure.is_file() and failure.read_text().strip()
                else f"exit status {error.exit_status}"
            )
            return Check(
                "preflight",
                "image train",
                FAIL,
                f"{image_ref} `train` failed on a {SAMPLE_ROWS}-row sample: {reason}",
                "fix the training program, rebuild (inv build) and run it locally (make deploy TARGET=local)",
            )
        except DockerException as error:
            return Check(
                "preflight",
                "image train",
                FAIL,
                f"cannot run {image_ref}: {str(error)[:200]}",
                "start Docker; build the image (inv build)",
            )
        saved = [p.name for p in (root / "model").iterdir()]
        if not saved:
            return Check(
                "preflight",
                "image train",
                FAIL,
                f"{image_ref} `train` exited 0 but left /opt/ml/model "
                "empty: SageMaker would store an empty model.tar.gz",
                "save the model (and metrics.json) to /opt/ml/model (SM_MODEL_DIR) before the program exits",
            )
    return Check(
        "preflight", "image train", OK, f"`train` on {SAMPLE_ROWS} rows per channel saved {', '.join(sorted(saved))}"
    )
