"""`inv deploy`: kernel -> image -> data -> training job -> report, each step timed."""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from pathlib import Path

from . import (
    aws,
    data,
    iam,
    image,
    instance,
    kernels,
    locks,
    parity,
    preflight,
    report,
    s3_data,
    training_job,
)
from . import versions as versions_mod
from .settings import ConfigError, Settings


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str):
        print(f"==> {name}", flush=True)
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 2)


TITANIC_THEME = "tabular"  # its image trains Titanic by default; its example reads the same channels

AWS_KEYS = (
    "AWS_REGION",
    "S3_BUCKET",
    "S3_PREFIX",
    "ECR_REPOSITORY",
    "SAGEMAKER_ROLE_ARN",
    "INSTANCE_TYPE",
    "INSTANCE_COUNT",
    "USE_SPOT",
    "MAX_RUN",
    "MAX_WAIT",
    "VOLUME_SIZE",
    "BASE_JOB_NAME",
)


def reproduce_commands(settings: Settings, job_name: str | None = None) -> list[str]:
    lines = [
        "git clone <this repository> && cd gs-ds-env",
        "cp .env.example .env   # then edit; values used by this run:",
        f"# THEME={settings.theme} PY={settings.py} TARGET={settings.target} TORCH_BACKEND={settings.torch_backend} "
        f"MODEL={settings.model} SEED={settings.seed}",
    ]
    if settings.base_image:
        lines.append(f"# BASE_IMAGE={settings.base_image}")
    if settings.target == "sagemaker":
        values = {key: getattr(settings, key.lower()) for key in AWS_KEYS}
        lines += [
            f"# {key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in values.items()
        ]
        lines.append("inv iam-policy --out iam/   # attach these before the first run (README: AWS set-up)")
    lines.append(f"make deploy THEME={settings.theme} PY={settings.py} TARGET={settings.target}")
    if settings.target == "sagemaker" and job_name:
        lines += [
            f"aws s3 ls {s3_data.uri(settings, 'output', job_name, 'output')}/",
            f"aws logs tail {iam.LOG_GROUP} --log-stream-name-prefix {job_name} --region {settings.aws_region}",
        ]
    return lines


def check_parity(settings: Settings, built: image.BuiltImage, allow_drift: bool) -> tuple[dict, parity.Environment]:
    """Kernel venv vs image, before any training: a difference stops the run unless `allow_drift`."""
    venv = settings.theme_files.venv
    container = parity.image_environment(built.local_ref)
    if not venv.is_dir():
        print(f"note: no kernel venv for {settings.theme} ({venv}): parity with the notebook not checked", flush=True)
        return {"checked": False, "reason": f"no kernel venv at {venv}"}, container
    result = parity.compare(settings.kernel_name, built.local_ref, parity.venv_environment(venv), container)
    if result.ok:
        print(f"parity: {result.summary()}", flush=True)
    elif allow_drift:
        print(f"warning: {result.summary()} (--allow-drift: training anyway; the report records it)", flush=True)
    else:
        raise parity.ParityError(
            f"{result.summary()}. The job would not run what the notebook ran: rebuild the "
            f"kernel (make kernel THEME={settings.theme} PY={settings.py} FORCE=1) or pass "
            f"--allow-drift"
        )
    return result.as_record(allow_drift), container


def titanic_data(staged: data.StagedData) -> dict:
    """The run record's `data`: the verified source, and each staged channel's sha256 and rows."""
    return {
        "source": staged.source,
        "sha256": staged.sha256,
        "rows": staged.rows,
        "channels": {
            channel: {"sha256": staged.channel_sha256[channel], "rows": staged.rows[channel]}
            for channel in staged.channels
        },
    }


def image_record(built: image.BuiltImage) -> dict:
    record = {"uri": built.uri, "content_tag": built.content_tag, "size_bytes": built.size_bytes}
    if built.digest:  # pushed: the registry's digest, and the tags this run sent
        record.update(digest=built.digest, pushed=built.pushed)
    return record


def sagemaker_fields(settings: Settings, account: str, choice, result: training_job.JobResult, job_name: str) -> dict:
    """The run record's SageMaker part: account, resources, instance evidence, bill, logs, console links."""
    urls = training_job.console_urls(settings.aws_region, job_name)
    return {
        "account": account,
        "s3_prefix_uri": s3_data.uri(settings),
        "ecr_repository": settings.ecr_repository,
        "role_arn": settings.sagemaker_role_arn,
        "model_local_copy": str(result.local_copy),
        "instance_type": settings.instance_type,
        "instance_count": settings.instance_count,
        "spot": settings.use_spot,
        "instance_evidence": choice.evidence(),
        "billable_seconds": result.billable_seconds,
        "price_usd_per_hour": choice.price,
        "cost_usd": result.cost_usd,
        "log_stream": f"{iam.LOG_GROUP} / {', '.join(result.log_streams) or job_name + '/algo-1-*'}",
        "console_url": urls["job"],
        "logs_url": urls["logs"],
        "job_status": result.description.get("TrainingJobStatus"),
    }


def _write_run(
    settings: Settings,
    job_name: str,
    built: image.BuiltImage,
    checked: tuple[dict, parity.Environment],
    result: training_job.JobResult,
    timer: Timer,
    pictures: list[str],
    *,
    channels: dict[str, str],
    hyperparameters: dict[str, str],
    **fields,
) -> Path:
    """Write the run record (run.json) and its report: what every run shares (settings, image, parity, the job's
    result, timings); `fields` adds the program's part (the Titanic data, or the entry point) and the target's
    (sagemaker_fields)."""
    parity_record, container = checked
    record = report.RunRecord(
        target=settings.target,
        theme=settings.theme,
        kernel=settings.kernel_name,
        region=settings.aws_region,
        job_name=job_name,
        image=image_record(built),
        parity=parity_record,
        versions=versions_mod.collect(settings, built, container),
        hyperparameters=hyperparameters,
        channels=channels,
        metrics=result.metrics,
        model_artifact=result.model_artifact,
        timings={**timer.seconds, "training computation (in container)": result.training_seconds or 0.0},
        pictures=pictures,
        **fields,
    )
    run_json, report_md = report.write(settings.paths.run(record.job_name), record)
    print(f"report: {report_md}\nrun record: {run_json}\nmodel: {record.model_artifact}", flush=True)
    return run_json


def _local_pictures(settings: Settings, result: training_job.JobResult, job_name: str) -> list[str]:
    """The pictures a local-mode job left in output.tar.gz (beside model.tar.gz), unpacked into the run folder."""
    return report.extract_pictures(Path(result.model_artifact).with_name("output.tar.gz"), settings.paths.run(job_name))


def run(
    settings: Settings,
    *,
    skip_kernel: bool = False,
    source: str | None = None,
    job_name: str | None = None,
    dry_run: bool = False,
    allow_drift: bool = False,
    skip_preflight: bool = False,
) -> Path | None:
    """`inv deploy` / `inv train` for either target; a dry run prints the plan and calls nothing."""
    if job_name and not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", job_name):
        raise ConfigError(f"job name {job_name!r} is invalid: letters, digits and '-', at most 63 characters")
    if dry_run:
        print(sagemaker_plan(settings) if settings.target == "sagemaker" else local_plan(settings), flush=True)
        return None
    if settings.target == "sagemaker":
        return deploy_sagemaker(
            settings,
            skip_kernel=skip_kernel,
            source=source,
            job_name=job_name,
            allow_drift=allow_drift,
            skip_preflight=skip_preflight,
        )
    return deploy_local(settings, skip_kernel=skip_kernel, source=source, job_name=job_name, allow_drift=allow_drift)


def deploy_local(
    settings: Settings,
    skip_kernel: bool = False,
    source: str | None = None,
    job_name: str | None = None,
    allow_drift: bool = False,
) -> Path:
    timer = Timer()
    if not skip_kernel:
        with timer.step("kernel"):
            kernels.create_kernel(settings)
    with timer.step("build"):
        built = image.build(settings)
    with timer.step("parity"):
        checked = check_parity(settings, built, allow_drift)
    with timer.step("data"):
        staged = data.split_and_stage(settings, source)
    job_name = job_name or training_job.new_job_name(settings)
    with timer.step("train"):
        result = training_job.train_local(settings, built.uri, staged.channels, job_name)
    pictures = _local_pictures(settings, result, job_name)
    return _write_run(
        settings,
        job_name,
        built,
        checked,
        result,
        timer,
        pictures,
        channels=result.channels,
        hyperparameters=settings.hyperparameters,
        data=titanic_data(staged),
        output_path=str(Path(result.model_artifact).parent),
        reproduce=reproduce_commands(settings),
    )


def script_mode(settings: Settings, hyperparameters: dict[str, str]) -> training_job.ScriptMode:
    """ENTRY_POINT / SOURCE_DIR checked and made relative: the entry point must be a file inside the source dir."""
    entry = Path(settings.entry_point).expanduser()
    entry = entry if entry.is_absolute() else (Path.cwd() / entry)
    if not entry.is_file():
        raise ConfigError(
            f"ENTRY_POINT {settings.entry_point!r} is not a file: give the script to run, e.g. "
            f"themes/{settings.theme}/example/train.py"
        )
    source_dir = Path(settings.source_dir).expanduser().resolve() if settings.source_dir else entry.parent.resolve()
    if not source_dir.is_dir():
        raise ConfigError(f"SOURCE_DIR {settings.source_dir!r} is not a folder")
    if not entry.resolve().is_relative_to(source_dir):
        raise ConfigError(
            f"ENTRY_POINT {settings.entry_point!r} is not inside SOURCE_DIR {str(source_dir)!r}: "
            "the source dir is what is shipped to the job"
        )
    defaults = {"seed": str(settings.seed)}
    if settings.instance_count > 1 and locks.has_torch(settings.theme_files.lock):
        defaults[training_job.TORCH_DISTRIBUTED] = "true"  # torchrun on every host (a --hyperparameter overrides)
    return training_job.ScriptMode(
        str(entry.resolve().relative_to(source_dir)), source_dir, {**defaults, **hyperparameters}
    )


def parse_channels(specs: list[str], target: str = "local") -> dict[str, str]:
    """--channel name=path-or-s3-uri -> {name: local folder or s3:// URI}. Local mode reads local folders; on
    SageMaker a local folder is uploaded under the prefix and an s3:// URI is used as it is."""
    channels: dict[str, str] = {}
    for spec in specs:
        name, sep, where = spec.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
            raise ConfigError(f"--channel {spec!r} is not name=path: e.g. --channel train=data/my-train")
        if where.startswith("s3://"):
            if target == "local":
                raise ConfigError(
                    f"--channel {spec!r}: local mode reads local folders; s3:// channels need TARGET=sagemaker"
                )
            channels[name] = where
            continue
        path = Path(where).expanduser().resolve()
        if not path.exists():
            raise ConfigError(f"--channel {spec!r}: {where} does not exist")
        channels[name] = str(path if path.is_dir() else path.parent)
    return channels


def titanic_channels(settings: Settings) -> dict[str, str]:
    """No --channel for the Titanic theme: its example reads the staged Titanic data, as `inv deploy` does."""
    if settings.theme != TITANIC_THEME:
        return {}
    staged = data.split_and_stage(settings)
    print(f"channels: none given; the staged Titanic data ({', '.join(staged.channels)})", flush=True)
    return {name: str(folder) for name, folder in staged.channels.items()}


def parse_hyperparameters(specs: list[str]) -> dict[str, str]:
    values = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key):
            raise ConfigError(f"--hyperparameter {spec!r} is not key=value: e.g. --hyperparameter horizon=12")
        values[key] = value
    return values


def _account_and_instance(settings: Settings, boto_session, timer: Timer, skip_preflight: bool):
    """The paid path's first steps, shared by `deploy` and `train --entry-point`: the cheap preflight, the
    account, and the instance choice (a zero quota stops here, before anything slow or paid). Returns the settings
    with INSTANCE_TYPE resolved (auto -> the chosen type): every later step reads it from there."""
    if not skip_preflight:
        with timer.step("preflight"):
            _stop_on_failures(preflight.cheap_checks(settings, boto_session))
    with timer.step("account and instance"):
        account = aws.account_id(boto_session)
        choice = instance.choose(settings, boto_session)
        for warning in choice.warnings:
            print(f"warning: {warning}", flush=True)
        print(f"instance: {choice.instance_type} ({choice.reason})", flush=True)
    return account, choice, settings.replace(instance_type=choice.instance_type)


def run_script(
    settings: Settings,
    *,
    channels: dict[str, str],
    hyperparameters: dict[str, str],
    job_name: str | None = None,
    allow_drift: bool = False,
    skip_preflight: bool = False,
) -> Path:
    """`inv train --entry-point FILE`: the user's code as a job in the theme's image (local mode or SageMaker)."""
    script = script_mode(settings, hyperparameters)
    channels = channels or titanic_channels(settings)
    if settings.target == "sagemaker":
        return _run_script_on_sagemaker(settings, script, channels, job_name, allow_drift, skip_preflight)
    timer = Timer()
    with timer.step("build"):
        built = image.build(settings)
    with timer.step("parity"):
        checked = check_parity(settings, built, allow_drift)
    job_name = job_name or training_job.new_job_name(settings)
    with timer.step("train"):
        folders = {name: Path(folder) for name, folder in channels.items()}
        result = training_job.train_local(settings, built.uri, folders, job_name, script=script)
    pictures = _local_pictures(settings, result, job_name)
    return _write_run(
        settings,
        job_name,
        built,
        checked,
        result,
        timer,
        pictures,
        channels=result.channels,
        hyperparameters=script.hyperparameters,
        entry_point=script.entry_point,
        source_dir=str(script.source_dir),
    )


def script_plan(settings: Settings, hyperparameters: dict[str, str], channels: dict[str, str]) -> str:
    """What `inv train --entry-point` would do, for either target; nothing is called."""
    script = script_mode(settings, hyperparameters)
    if not channels and settings.theme == TITANIC_THEME:
        channels = {name: f"<staged Titanic {name}>" for name in data.CHANNELS}
    image_step = " ".join(
        image.build_push_command(
            settings,
            push=settings.target == "sagemaker",
            account=iam.account_of(settings.sagemaker_role_arn) if settings.target == "sagemaker" else "-",
        )
    )
    lines = [
        f"plan for inv train --entry-point (theme {settings.theme}, Python {settings.py}, TARGET={settings.target}):",
        f"  1. {image_step}",
        "  2. parity: the kernel venv's packages vs the image's (stop on any difference unless --allow-drift)",
    ]
    if settings.target == "sagemaker":
        uploads = {
            name: where if where.startswith("s3://") else s3_data.uri(settings, "channels", name)
            for name, where in channels.items()
        }
        lines += [
            f"  3. channels: {uploads or 'none'} (local folders uploaded with s3:PutObject, SSE {s3_data.ENCRYPTION})",
            f"  4. the SDK tars {script.source_dir} and uploads it as "
            f"{s3_data.uri(settings, 'code')}/<job>/source/sourcedir.tar.gz",
            f"  5. sagemaker:CreateTrainingJob with hyperparameters {script.hyperparameters} + sagemaker_program="
            f"{script.entry_point}, sagemaker_submit_directory=<that sourcedir.tar.gz>; the image's toolkit "
            "runs it",
            "  6. model.tar.gz checked in S3, runs/<job>/report.md + run.json",
        ]
    else:
        lines += [
            f"  3. Estimator(instance_type='local', instance_count={settings.instance_count}, "
            f"entry_point={script.entry_point!r}, "
            f"source_dir={str(script.source_dir)!r}, hyperparameters={script.hyperparameters}).fit({channels or None})",
            "  4. runs/<job>/model.tar.gz, report.md + run.json",
        ]
    if settings.instance_count > 1:
        launcher = (
            "the toolkit starts the script with torchrun on each host: one process group (RANK, WORLD_SIZE, "
            "MASTER_ADDR = the first host)"
            if script.hyperparameters.get(training_job.TORCH_DISTRIBUTED) == "true"
            else "each host runs the script on its own (no distributed launcher: not a torch theme)"
        )
        lines.append(f"  hosts: {settings.instance_count}; {launcher}")
    return "\n".join(lines)


def _upload_channels(settings: Settings, boto_session, channels: dict[str, str]) -> dict[str, str]:
    """Local channel folders go under <prefix>/channels/<name>/ (encrypted); s3:// URIs are used as they are."""
    s3 = aws.client(boto_session, "s3")
    s3_data.ensure_bucket(settings, s3)
    uris = {}
    for name, where in channels.items():
        if where.startswith("s3://"):
            uris[name] = where
            continue
        for path in sorted(p for p in Path(where).rglob("*") if p.is_file()):
            key = s3_data.key(settings, "channels", name, str(path.relative_to(where)))
            try:
                s3.upload_file(
                    str(path), settings.s3_bucket, key, ExtraArgs={"ServerSideEncryption": s3_data.ENCRYPTION}
                )
            except aws.CALL_ERRORS as error:
                raise aws.explain(error, f"uploading {path} to s3://{settings.s3_bucket}/{key}") from None
        uris[name] = s3_data.uri(settings, "channels", name)
        print(f"[s3] channel {name}: {where} -> {uris[name]}", flush=True)
    return uris


def _run_script_on_sagemaker(
    settings: Settings,
    script: training_job.ScriptMode,
    channels: dict[str, str],
    job_name: str | None,
    allow_drift: bool,
    skip_preflight: bool,
) -> Path:
    """The same script as a SageMaker job: the SDK uploads source_dir as sourcedir.tar.gz under <prefix>/code/."""
    timer = Timer()
    boto_session = aws.session(settings)
    account, choice, settings = _account_and_instance(settings, boto_session, timer, skip_preflight)
    with timer.step("build and push"):
        pushed = image.push(settings, account)
    with timer.step("parity"):
        checked = check_parity(settings, pushed, allow_drift)
    with timer.step("channels"):
        uris = _upload_channels(settings, boto_session, channels)
    job_name = job_name or training_job.new_job_name(settings)
    run_dir = settings.paths.run(job_name)
    with timer.step("train"):
        training_job.run_on_sagemaker(settings, boto_session, pushed.uri, uris, job_name, script)
    with timer.step("results"):
        result = training_job.collect_sagemaker(settings, boto_session, job_name, choice.price, run_dir)
        output = training_job.fetch_output(boto_session, result.model_artifact, run_dir)
        pictures = report.extract_pictures(output, run_dir) if output else []
    return _write_run(
        settings,
        job_name,
        pushed,
        checked,
        result,
        timer,
        pictures,
        channels=uris,
        hyperparameters=script.hyperparameters,
        entry_point=script.entry_point,
        source_dir=str(script.source_dir),
        **sagemaker_fields(settings, account, choice, result, job_name),
    )


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


def _stop_on_failures(checks) -> None:
    for check in checks:
        print(f"preflight {check.status:4} {check.name}: {check.detail}", flush=True)
    failures = [check for check in checks if check.status == "fail"]
    if failures:
        raise preflight.PreflightFailed(
            "; ".join(f"{c.name}: {c.detail} (fix: {c.fix})" if c.fix else f"{c.name}: {c.detail}" for c in failures)
            + " — nothing was pushed or started (--skip-preflight "
            "to go on anyway)"
        )


def deploy_sagemaker(
    settings: Settings,
    skip_kernel: bool = False,
    source: str | None = None,
    job_name: str | None = None,
    allow_drift: bool = False,
    skip_preflight: bool = False,
) -> Path:
    """preflight -> kernel -> instance evidence -> build -> image check -> ECR push -> S3 upload -> training job
    -> verified model -> report."""
    timer = Timer()
    boto_session = aws.session(settings)
    account, choice, settings = _account_and_instance(settings, boto_session, timer, skip_preflight)
    if not skip_kernel:
        with timer.step("kernel"):
            kernels.create_kernel(settings)
    if not skip_preflight:
        with timer.step("image check"):
            built = image.build(settings)
            staged = data.split_and_stage(settings, source)
            _stop_on_failures([preflight.image_check(settings, built.local_ref, staged.channels)])
    with timer.step("build and push"):
        pushed = image.push(settings, account)
    with timer.step("parity"):
        checked = check_parity(settings, pushed, allow_drift)
    with timer.step("data"):
        staged = data.split_and_stage(settings, source)
        uploaded = s3_data.upload(settings, aws.client(boto_session, "s3"), staged)
    job_name = job_name or training_job.new_job_name(settings)
    run_dir = settings.paths.run(job_name)
    if choice.price is not None:
        ceiling = (
            choice.price * settings.instance_count * (settings.max_wait if settings.use_spot else settings.max_run)
        )
        print(
            f"starting a paid training job {job_name}: {settings.instance_count} x {settings.instance_type} at "
            f"{choice.price:.3f} USD/h, at most {ceiling / 3600:.2f} USD (MAX_RUN/MAX_WAIT bound)",
            flush=True,
        )
    with timer.step("train"):
        training_job.run_on_sagemaker(settings, boto_session, pushed.uri, uploaded.channels, job_name)
    with timer.step("results"):
        result = training_job.collect_sagemaker(settings, boto_session, job_name, choice.price, run_dir)
        output = training_job.fetch_output(boto_session, result.model_artifact, run_dir)
        pictures = report.extract_pictures(output, run_dir) if output else []
    return _write_run(
        settings,
        job_name,
        pushed,
        checked,
        result,
        timer,
        pictures,
        channels=uploaded.channels,
        hyperparameters=settings.hyperparameters,
        data={**titanic_data(staged), "objects": uploaded.objects, "bucket_actions": uploaded.bucket_actions},
        output_path=s3_data.uri(settings, "output"),
        reproduce=reproduce_commands(settings, job_name),
        **sagemaker_fields(settings, account, choice, result, job_name),
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
    request = training_job.planned_request(settings, boto_session, image_uri, channels, job_name)
    data_plan = s3_data.plan(settings).splitlines()
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
            f"sagemaker:DescribeTrainingJob until it ends; logs:DescribeLogStreams + GetLogEvents {iam.LOG_GROUP} "
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
