"""What a run would do, printed before anything runs (`--dry-run`) and recorded after (the run record's
reproduce commands): every command and AWS call of `inv deploy` and `inv train` on either target."""

from __future__ import annotations

import json

from gs_ds_env import aws, data, image
from gs_ds_env.aws import iam, instance
from gs_ds_env.data import s3_data
from gs_ds_env.job import sagemaker_job, script_mode, training_job
from gs_ds_env.job.report import invoked_command
from gs_ds_env.ops import preflight
from gs_ds_env.settings import Settings


def reproduce_commands(settings: Settings, target, job_name: str | None = None) -> list[str]:
    """The run record's reproduce commands: the values this run used, the target's set-up, the command, and where the
    target's results can be looked at (`target`: targets.LocalTarget or SageMakerTarget)."""
    lines = [
        "git clone <this repository> && cd gs-ds-env",
        "cp .env.example .env   # then edit; values used by this run:",
        f"# THEME={settings.theme} PY={settings.py} TARGET={settings.target} TORCH_BACKEND={settings.torch_backend} "
        f"MODEL={settings.model} SEED={settings.seed}",
    ]
    if settings.base_image:
        lines.append(f"# BASE_IMAGE={settings.base_image}")
    lines += target.reproduce_setup(settings)
    lines.append(f"make deploy THEME={settings.theme} PY={settings.py} TARGET={settings.target}")
    return lines + (target.reproduce_results(settings, job_name) if job_name else [])


def script_reproduce_commands(settings: Settings) -> list[str]:
    return [
        "git clone <this repository> && cd gs-ds-env",
        f"# THEME={settings.theme} PY={settings.py} TARGET={settings.target} TORCH_BACKEND={settings.torch_backend}",
        invoked_command(),
    ]


def image_step(settings: Settings, push: bool) -> str:
    """The plan's image step: built here, and for SageMaker pushed to the role's account."""
    account = iam.account_of(settings.sagemaker_role_arn) if push else "-"
    return " ".join(image.build_push_command(settings, push=push, account=account))


def script_plan(
    settings: Settings, script: script_mode.ScriptMode, channels: dict[str, str] | None, image: str
) -> list[str]:
    """What `inv train --entry-point` does on either target (the head of the plan, `image` its target's image step;
    each target adds its steps)."""
    if channels is None:  # no --channel on the Titanic theme: its staged data
        channels = {name: f"<staged Titanic {name}>" for name in data.CHANNELS}
    described = {
        name: where if where.startswith("<") else script_mode.describe_channel(where)
        for name, where in channels.items()
    }
    user_metrics = [d["Name"] for d in script.metric_definitions if not d["Name"].startswith(("train:", "validation:"))]
    lines = [
        f"plan for inv train --entry-point (theme {settings.theme}, Python {settings.py}, TARGET={settings.target}):",
        f"  1. {image}",
        "  2. parity: the kernel venv's packages vs the image's (stop on any difference unless --allow-drift)",
        f"  ships: {script.source_dir}/"
        + "".join(f" + {path.name} (from {path})" for path in script.dependencies)
        + f" — {script.shipped_summary()}; the job runs a copy, runs/<job>/code/ (kept with the run)",
        f"  channels: {described or 'none'}",
        f"  hyperparameters, exactly: {script.hyperparameters} (the script gets `--key value` for each, nothing "
        f"else); environment {script_mode.SEED_VARIABLE}={settings.seed}",
        f"  metrics: `train:|validation:|test:<name>=<number>` lines, XGBoost's, LightGBM's and Keras' log lines"
        f"{', and ' + ', '.join(user_metrics) if user_metrics else ''}; metrics.json in the model when there is one",
    ]
    if settings.instance_count > 1:
        launcher = (
            "the toolkit starts the script with torchrun on each host: one process group (RANK, WORLD_SIZE, "
            "MASTER_ADDR = the first host)"
            if script.hyperparameters.get(script_mode.TORCH_DISTRIBUTED) == "true"
            else "each host runs the script on its own (no distributed launcher: not a torch theme)"
        )
        lines.append(f"  hosts: {settings.instance_count}; {launcher}")
    return lines


def script_steps_local(settings: Settings, script: script_mode.ScriptMode, channels: dict | None) -> list[str]:
    return [
        f"  3. Estimator(instance_type='local', instance_count={settings.instance_count}, "
        f"entry_point={script.entry_point!r}, source_dir='runs/<job>/code', hyperparameters={script.hyperparameters})"
        f".fit({list(channels) if channels is not None else list(data.CHANNELS)}), stopped after MAX_RUN={settings.max_run} s",
        "  4. runs/<job>/model.tar.gz, job.log, report.md + run.json (also when the job fails or is interrupted)",
    ]


def script_steps_sagemaker(settings: Settings, script: script_mode.ScriptMode, channels: dict | None) -> list[str]:
    channels = channels if channels is not None else {name: f"<staged Titanic {name}>" for name in data.CHANNELS}
    uploads = {
        name: where if where.startswith(("s3://", "<")) else s3_data.planned_channel_uri(settings, name, where)
        for name, where in channels.items()
    }
    return [
        f"  3. channels: {uploads or 'none'} (content-addressed prefixes holding exactly these files; a file "
        f"already there with the same sha256 is not sent; s3:PutObject, SSE {s3_data.ENCRYPTION})",
        f"  4. the SDK tars that copy and uploads it as {s3_data.uri(settings, 'code')}/<job>/source/sourcedir.tar.gz",
        f"  5. sagemaker:CreateTrainingJob with hyperparameters {script.hyperparameters} + sagemaker_program="
        f"{script.entry_point}, sagemaker_submit_directory=<that sourcedir.tar.gz>, MaxRuntimeInSeconds="
        f"{settings.max_run}, {len(script.metric_definitions)} metric definitions; the image's toolkit runs it",
        "  6. follow its logs (Ctrl-C stops it: sagemaker:StopTrainingJob; --detach returns at once, then "
        "`inv job.attach <job>`), model.tar.gz checked in S3, runs/<job>/report.md + run.json",
    ]


def local_plan(settings: Settings) -> str:
    build_cmd = " ".join(image.build_push_command(settings, push=False))
    return "\n".join(
        [
            f"plan for TARGET=local (theme {settings.theme}, Python {settings.py}):",
            f"  1. bin/gs-env-create-kernel.sh {settings.theme} {settings.py} '' {settings.torch_backend}",
            f"  2. {build_cmd}",
            "  3. parity: the kernel venv's packages vs the image's (stop on any difference unless --allow-drift)",
            f"  4. fetch {settings.titanic_csv or settings.titanic_url} (sha256 {settings.titanic_sha256[:12]}…), "
            f"split {1 - settings.validation_fraction:g}/{settings.validation_fraction:g} seed {settings.seed} into data/staged/",
            f"  5. Estimator(instance_type='local', hyperparameters={settings.hyperparameters}).fit(train, validation)",
            "  6. runs/<job>/report.md + run.json (with every version: Python, lock sha256, base image, packages, SDK, uv, "
            "Docker)",
        ]
    )


def sagemaker_plan(settings: Settings) -> str:
    """Every command and AWS call of `deploy_sagemaker`, with parameters; nothing is called."""
    account = iam.account_of(settings.sagemaker_role_arn)
    boto_session = aws.session(settings)
    if settings.instance_type == "auto":  # resolved once, as the run does; here from the price table alone
        settings = settings.replace(instance_type=instance.cheapest_by_table(boto_session))
        auto_note = f" (auto: shown as {settings.instance_type}, the cheapest in the price table; the run picks the cheapest with quota > 0 from live quotas and prices)"
    else:
        auto_note = ""
    job_name = training_job.new_job_name(settings)
    push = image.push_plan(settings, account)
    image_uri = push.image_uri
    channels = {channel: s3_data.channel_uri(settings, channel) for channel in data.CHANNELS}
    request = sagemaker_job.planned_request(settings, boto_session, image_uri, channels, job_name)
    data_plan = s3_data.stage_plan(settings) + s3_data.upload_plan(settings)
    steps = [
        (
            "preflight, read-only (--skip-preflight skips it): sts:GetCallerIdentity; ecr:DescribeRepositories + "
            "GetAuthorizationToken; iam:GetRole (trusts sagemaker.amazonaws.com?) + SimulatePrincipalPolicy iam:PassRole; "
            "s3:GetBucketLocation + HeadObject on the channels; service-quotas; after the build (step 4), the image's "
            f"`train` on a {preflight.SAMPLE_ROWS}-row sample must leave a non-empty /opt/ml/model before the push",
            [],
        ),
        (
            "instance evidence: botocore model TrainingInstanceType; service-quotas:ListAWSDefaultServiceQuotas + "
            f"ListServiceQuotas ServiceCode=sagemaker; pricing:GetProducts (us-east-1) ServiceCode=AmazonSageMaker "
            f"regionCode={settings.aws_region}; INSTANCE_TYPE={settings.instance_type}{auto_note}",
            [],
        ),
        (f"bin/gs-env-create-kernel.sh {settings.theme} {settings.py} '' {settings.torch_backend}", []),
        (" ".join(image.build_push_command(settings, push=True, account=account)), push.commands),
        ("parity: the kernel venv's packages vs the image's (stop on any difference unless --allow-drift)", []),
        (data_plan[0], data_plan[1:]),
        (
            "sagemaker:CreateTrainingJob (as the SDK's Estimator.fit sends it):",
            json.dumps(request, indent=2, default=str).splitlines(),
        ),
        (
            f"sagemaker:DescribeTrainingJob until it ends; logs:DescribeLogStreams + GetLogEvents {aws.LOG_GROUP} "
            f"{job_name}/* (streamed)",
            [],
        ),
        (
            f"s3:HeadObject + GetObject {s3_data.uri(settings, 'output', job_name, 'output', 'model.tar.gz')} -> "
            f"runs/{job_name}/model.tar.gz, metrics.json; billable seconds x price = cost",
            [],
        ),
        (f"runs/{job_name}/report.md + run.json", []),
    ]
    lines = [
        f"plan for TARGET=sagemaker (theme {settings.theme}, Python {settings.py}, region {settings.aws_region}, "
        f"account {account} as in SAGEMAKER_ROLE_ARN; a real run asks STS):"
    ]
    for number, (title, details) in enumerate(steps, 1):
        lines.append(f"  {number}. {title}")
        lines += [f"       {line}" for line in details]
    return "\n".join(lines)
