"""`inv deploy`: kernel -> image -> data -> training job -> report, each step timed."""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

from . import (
    aws,
    data,
    image,
    instance,
    kernels,
    parity,
    preflight,
    report,
    s3_data,
    script_mode,
    sdk,
    training_job,
)
from . import versions as versions_mod
from .data import TITANIC_THEME
from .plans import local_plan, reproduce_commands, sagemaker_plan, script_reproduce_commands
from .report import invoked_command
from .settings import ConfigError, Settings


def process_age() -> float | None:
    """Seconds since this process started (Linux's /proc): the start-up (interpreter, inv, imports, settings) that
    no step can time from inside. None elsewhere."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


# Set by the CLI (`inv deploy`, `inv train`): there the process is the run, so its start-up is the run's first step.
# A notebook kernel that calls deploy.run has lived for hours: its age is no step of the run.
COUNT_PROCESS_START_UP = False


class Timer:
    """Each step's seconds, in order (under the CLI from the process's start): the report's timings add up to the
    run's wall time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        age = process_age() if COUNT_PROCESS_START_UP else None
        if age is not None:
            self.seconds["start-up (inv, imports, settings)"] = round(age, 2)

    @contextmanager
    def step(self, name: str, announce: bool = True):
        if announce:
            print(f"==> {name}", flush=True)
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 2)


JOB_NAME = r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"  # SageMaker's training job names; also runs/<name>


def check_parity(settings: Settings, built: image.BuiltImage, allow_drift: bool) -> tuple[dict, parity.Environment]:
    """Kernel venv vs image, before any training: a difference stops the run unless `allow_drift`."""
    venv = settings.theme_files.venv
    container = (
        parity.image_environment_once(built.local_ref, settings.paths.image_packages(built.image_id))
        if built.image_id
        else parity.image_environment(built.local_ref)
    )
    if not venv.is_dir():
        print(f"note: no kernel venv for {settings.theme} ({venv}): parity with the notebook not checked", flush=True)
        return {"checked": False, "reason": f"no kernel venv at {venv}", "image_packages": container.origin}, container
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
    return {**result.as_record(allow_drift), "image_packages": container.origin}, container


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
    if built.image_id:
        record["image_id"] = built.image_id
    if built.digest:  # pushed: the registry's digest, and the tags this run sent
        record.update(digest=built.digest, pushed=built.pushed)
    return record


def sagemaker_fields(
    settings: Settings, account: str, choice, result: training_job.JobResult | None, job_name: str
) -> dict:
    """The run record's SageMaker part: account, resources, instance evidence, bill, logs, console links (the
    job's own facts, `result`, once it has ended)."""
    urls = training_job.console_urls(settings.aws_region, job_name)
    fields = {
        "account": account,
        "s3_prefix_uri": s3_data.uri(settings),
        "ecr_repository": settings.ecr_repository,
        "role_arn": settings.sagemaker_role_arn,
        "instance_type": settings.instance_type,
        "instance_count": settings.instance_count,
        "spot": settings.use_spot,
        "instance_evidence": choice.evidence() if choice else None,
        "price_usd_per_hour": choice.price if choice else None,
        "log_stream": f"{aws.LOG_GROUP} / {job_name}/algo-1-*",
        "console_url": urls["job"],
        "logs_url": urls["logs"],
    }
    if result is not None:
        fields.update(
            model_local_copy=str(result.local_copy),
            billable_seconds=result.billable_seconds,
            cost_usd=result.cost_usd,
            log_stream=f"{aws.LOG_GROUP} / {', '.join(result.log_streams) or job_name + '/algo-1-*'}",
            job_status=result.description.get("TrainingJobStatus"),
        )
    return fields


def _write_run(
    settings: Settings,
    job_name: str,
    built: image.BuiltImage,
    checked: tuple[dict, parity.Environment],
    result: training_job.JobResult | None,
    timer: Timer,
    pictures: list[str],
    *,
    channels: dict[str, str] | None,
    hyperparameters: dict[str, str],
    **fields,
) -> Path:
    """Write the run record (run.json) and its report: what every run shares (settings, image, parity, the job's
    result, timings, the command); `fields` adds the program's part (the Titanic data, or the entry point), the
    target's (sagemaker_fields) and, for a job that did not complete, its status and reason."""
    started = time.perf_counter()
    parity_record, container = checked
    versions = fields.pop("versions", None) or versions_mod.collect(settings, built, container)
    timings = dict(timer.seconds)
    if result is not None:
        timings.update({f"train: {step}": seconds for step, seconds in result.steps.items()})
        timings["training computation (in container)"] = result.training_seconds or 0.0
    timings["run record (versions, report)"] = round(time.perf_counter() - started, 2)
    record = report.RunRecord(
        target=settings.target,
        theme=settings.theme,
        kernel=settings.kernel_name,
        region=settings.aws_region,
        job_name=job_name,
        image=image_record(built),
        parity=parity_record,
        versions=versions,
        hyperparameters=hyperparameters,
        channels=channels,
        metrics=result.metrics if result else {},
        model_artifact=result.model_artifact if result else "",
        timings=timings,
        pictures=pictures,
        command=invoked_command(),
        environment={script_mode.SEED_VARIABLE: str(settings.seed)},
        **({"log_path": result.log_path} if result and result.log_path else {}),
        **fields,
    )
    run_json, report_md = report.write(settings.paths.run(record.job_name), record)
    print(
        f"report: {report_md}\nrun record: {run_json}" + (f"\nmodel: {record.model_artifact}" if result else ""),
        flush=True,
    )
    return run_json


@contextmanager
def recording_failures(write):
    """A job that does not complete still leaves its record: `write(status=…, reason=…, **facts)` runs before the
    failure or interruption goes on to the one-line error."""
    try:
        yield
    except training_job.TrainingFailed as failed:
        write(status=failed.status, reason=failed.reason, **failed.facts)
        raise
    except KeyboardInterrupt as interrupted:
        status = getattr(interrupted, "status", "interrupted (Ctrl-C)")
        write(status=status, reason=status)
        raise


def claim_job_name(settings: Settings, job_name: str | None, program: str) -> str:
    """The job's name (given, or BASE_JOB_NAME-<theme>-<program>-<timestamp>); runs/<name> must not exist yet: a
    run is never overwritten."""
    if job_name is not None and not re.fullmatch(JOB_NAME, job_name):
        raise ConfigError(f"job name {job_name!r} is invalid: letters, digits and '-', at most 63 characters")
    name = job_name or training_job.new_job_name(settings, program)
    if settings.paths.run(name).exists():
        raise ConfigError(
            f"runs/{name} already exists: a run is never overwritten; choose another --job-name (or leave it out)"
        )
    return name


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
    detach: bool = False,
) -> Path | None:
    """`inv deploy` / `inv train` for either target; a dry run prints the plan and calls nothing."""
    if dry_run:
        print(sagemaker_plan(settings) if settings.target == "sagemaker" else local_plan(settings), flush=True)
        return None
    sdk.prefetch()  # imported while the first steps wait on the kernel script, the build and parity
    if settings.target == "sagemaker":
        return deploy_sagemaker(
            settings,
            skip_kernel=skip_kernel,
            source=source,
            job_name=job_name,
            allow_drift=allow_drift,
            skip_preflight=skip_preflight,
            detach=detach,
        )
    return deploy_local(settings, skip_kernel=skip_kernel, source=source, job_name=job_name, allow_drift=allow_drift)


def _write_failed_local(settings, job_name, built, checked, timer, **fields):
    """The record of a local job that did not complete (whatever it left, e.g. output.tar.gz, stays beside it)."""

    def write(**outcome):
        _write_run(settings, job_name, built, checked, None, timer, [], **fields, **outcome)

    return write


def deploy_local(
    settings: Settings,
    skip_kernel: bool = False,
    source: str | None = None,
    job_name: str | None = None,
    allow_drift: bool = False,
) -> Path:
    job_name = claim_job_name(settings, job_name, "titanic")
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
    common = dict(
        hyperparameters=settings.hyperparameters, data=titanic_data(staged), reproduce=reproduce_commands(settings)
    )
    failed = _write_failed_local(
        settings, job_name, built, checked, timer, channels={k: str(v) for k, v in staged.channels.items()}, **common
    )
    with timer.step("train"), recording_failures(failed):
        result = training_job.train_local(settings, built.uri, staged.channels, job_name)
    with timer.step("pictures (from output.tar.gz)", announce=False):
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
        output_path=str(Path(result.model_artifact).parent),
        **common,
    )


def titanic_channels(settings: Settings) -> dict[str, str]:
    """No --channel for the Titanic theme: its example reads the staged Titanic data, as `inv deploy` does."""
    if settings.theme != TITANIC_THEME:
        return {}
    staged = data.split_and_stage(settings)
    print(f"channels: none given; the staged Titanic data ({', '.join(staged.channels)})", flush=True)
    return {name: str(folder) for name, folder in staged.channels.items()}


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
    channels: dict[str, str] | None,
    hyperparameters: dict[str, str],
    metric_definitions: list[dict[str, str]] | None = None,
    job_name: str | None = None,
    allow_drift: bool = False,
    skip_preflight: bool = False,
    detach: bool = False,
) -> Path:
    """`inv train --entry-point FILE`: the user's code as a job in the theme's image (local mode or SageMaker)."""
    script = script_mode.prepare(settings, hyperparameters, metric_definitions)
    sdk.prefetch()
    job_name = claim_job_name(settings, job_name, script.entry_point)
    if channels is None:  # no --channel: the staged Titanic data, as the Titanic job has; {}: no channel at all
        channels = titanic_channels(settings)
    fields = dict(
        hyperparameters=script.hyperparameters,
        entry_point=script.entry_point,
        source_dir=str(script.source_dir),
        shipped=script.shipped_summary(),
        metric_definitions=script.metric_definitions,
        reproduce=script_reproduce_commands(settings),
    )
    if settings.target == "sagemaker":
        return _run_script_on_sagemaker(
            settings, script, channels, job_name, allow_drift, skip_preflight, detach, fields
        )
    timer = Timer()
    with timer.step("build"):
        built = image.build(settings)
    with timer.step("parity"):
        checked = check_parity(settings, built, allow_drift)
    folders = script_mode.local_folders(channels, settings.paths.run(job_name) / "channels")
    failed = _write_failed_local(
        settings, job_name, built, checked, timer, channels={k: str(v) for k, v in folders.items()}, **fields
    )
    with timer.step("train"), recording_failures(failed):
        result = training_job.train_local(settings, built.uri, folders, job_name, script=script)
    with timer.step("pictures (from output.tar.gz)", announce=False):
        pictures = _local_pictures(settings, result, job_name)
    return _write_run(settings, job_name, built, checked, result, timer, pictures, channels=result.channels, **fields)


def _run_script_on_sagemaker(
    settings: Settings,
    script: script_mode.ScriptMode,
    channels: dict[str, str],
    job_name: str,
    allow_drift: bool,
    skip_preflight: bool,
    detach: bool,
    fields: dict,
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
        uploaded = s3_data.upload_channels(settings, aws.client(boto_session, "s3"), channels)
    job = SageMakerJob(settings, boto_session, account, choice, pushed, checked, timer, job_name)
    return job.run(uploaded.channels, script, detach, **fields)


class SageMakerJob:
    """The paid part both SageMaker flows share: announce the cost ceiling, start the job, follow it (or return
    at once with --detach), collect its results, write its record — also when it fails or is stopped."""

    def __init__(self, settings, boto_session, account, choice, pushed, checked, timer, job_name) -> None:
        self.settings, self.boto_session, self.account, self.choice = settings, boto_session, account, choice
        self.pushed, self.checked, self.timer, self.job_name = pushed, checked, timer, job_name
        self.run_dir = settings.paths.run(job_name)

    def _write(self, result, pictures, channels, **fields) -> Path:
        target = sagemaker_fields(self.settings, self.account, self.choice, result, self.job_name)
        return _write_run(
            self.settings, self.job_name, self.pushed, self.checked, result, self.timer, pictures,
            channels=channels, **{**target, **fields},
        )  # fmt: skip

    def run(self, channels: dict[str, str], script, detach: bool, **fields) -> Path:
        settings, price = self.settings, self.choice.price
        if price is not None:
            ceiling = price * settings.instance_count * (settings.max_wait if settings.use_spot else settings.max_run)
            print(
                f"starting a paid training job {self.job_name}: {settings.instance_count} x {settings.instance_type} "
                f"at {price:.3f} USD/h, at most {ceiling / 3600:.2f} USD (MAX_RUN/MAX_WAIT bound)",
                flush=True,
            )

        def failed(**outcome):
            self._write(None, [], channels, **fields, **outcome)

        with self.timer.step("train"), recording_failures(failed):
            training_job.run_on_sagemaker(
                settings, self.boto_session, self.pushed.uri, channels, self.job_name, script, detach=detach
            )
        if detach:
            run_json = self._write(None, [], channels, status=training_job.IN_PROGRESS, **fields)
            print(
                f"training job {self.job_name} started and left running (--detach): follow it and collect its "
                f"results with `inv job attach {self.job_name}`; stop it with "
                f"`aws sagemaker stop-training-job --training-job-name {self.job_name}`",
                flush=True,
            )
            return run_json
        return self.collect(channels, script.metric_definitions if script else None, **fields)

    def collect(self, channels: dict[str, str], definitions, **fields) -> Path:
        def failed(**outcome):
            self._write(None, [], channels, **fields, **outcome)

        with self.timer.step("results"), recording_failures(failed):
            result = training_job.collect_sagemaker(
                self.settings, self.boto_session, self.job_name, self.choice.price, self.run_dir, definitions
            )
            output = training_job.fetch_output(self.boto_session, result.model_artifact, self.run_dir)
            pictures = report.extract_pictures(output, self.run_dir) if output else []
        return self._write(result, pictures, channels, **fields)


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
    detach: bool = False,
) -> Path:
    """preflight -> kernel -> instance evidence -> build -> image check -> ECR push -> S3 upload -> training job
    -> verified model -> report."""
    job_name = claim_job_name(settings, job_name, "titanic")
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
    job = SageMakerJob(settings, boto_session, account, choice, pushed, checked, timer, job_name)
    return job.run(
        uploaded.channels,
        None,
        detach,
        hyperparameters=settings.hyperparameters,
        data={**titanic_data(staged), "objects": uploaded.objects, "bucket_actions": uploaded.bucket_actions},
        output_path=s3_data.uri(settings, "output"),
        reproduce=reproduce_commands(settings, job_name),
    )


def attach(settings: Settings, job_name: str) -> Path:
    """`inv job attach NAME`: follow a SageMaker job started with --detach until it ends (Ctrl-C stops it), then
    collect its results into runs/<job>/ and complete its record."""
    if not re.fullmatch(JOB_NAME, job_name):
        raise ConfigError(f"job name {job_name!r} is invalid: letters, digits and '-', at most 63 characters")
    run_json = settings.paths.run(job_name) / "run.json"
    try:
        record = report.RunRecord.load(run_json)
    except (OSError, ValueError, TypeError) as error:
        raise ConfigError(
            f"no readable run record {run_json} ({type(error).__name__}): attach follows jobs started here with "
            "`inv train|deploy --target sagemaker --detach`"
        ) from None
    if record.target != "sagemaker":
        raise ConfigError(f"{job_name} ran in local mode: there is no SageMaker job to attach to")
    if record.status != training_job.IN_PROGRESS:
        raise ConfigError(f"{job_name} has already ended ({record.status}): its results are in {run_json.parent}")
    settings = settings.replace(target="sagemaker", theme=record.theme, aws_region=record.region)
    boto_session = aws.session(settings)
    timer = Timer()
    timer.seconds.update(record.timings)
    choice = AttachedChoice(record.price_usd_per_hour, record.instance_evidence)
    built = image.BuiltImage.from_record(record.image)
    settings = settings.replace(
        instance_type=record.instance_type or settings.instance_type, instance_count=record.instance_count or 1
    )
    checked = (record.parity, None)
    job = SageMakerJob(settings, boto_session, record.account, choice, built, checked, timer, job_name)
    fields = {**record.program_fields(), "versions": record.versions}

    def failed(**outcome):
        job._write(None, [], record.channels, **fields, **outcome)

    with timer.step("train"), recording_failures(failed):
        training_job.wait_for(boto_session, job_name)
    return job.collect(record.channels, record.metric_definitions, **fields)


class AttachedChoice:
    """The instance choice as the detached run recorded it (price and evidence), for the attached run's record."""

    def __init__(self, price: float | None, evidence: str | None) -> None:
        self.price, self._evidence = price, evidence

    def evidence(self) -> str | None:
        return self._evidence
