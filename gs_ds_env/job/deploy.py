"""`inv deploy`, `inv train`, `inv process` and `inv job.attach`: one run flow for a program (the Titanic program on
the staged data, your script, a processing job, or a detached run's record) on a target (local mode, SageMaker, or a
detached SageMaker job resumed: targets.py): kernel -> image -> parity -> channels -> job -> record, each step timed."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gs_ds_env import data, sdk
from gs_ds_env.data import TITANIC_THEME, s3_data
from gs_ds_env.job import plans, processing, report, script_mode, targets, training_job
from gs_ds_env.job.draft import RunDraft
from gs_ds_env.job.plans import reproduce_commands, script_reproduce_commands
from gs_ds_env.kernel import kernels
from gs_ds_env.settings import ConfigError, Settings


def process_age() -> float | None:
    """Seconds since this process started (Linux's /proc): the start-up (interpreter, inv, imports, settings) that
    no step can time from inside. None elsewhere."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


class Timer:
    """Each step's seconds, in order: the report's timings add up to the run's wall time. `count_start_up`: the CLI's
    (`inv deploy`, `inv train`), where the process is the run, so all it did before the first step (interpreter, inv,
    imports, settings) is the run's first step; a notebook kernel that calls deploy.run has lived for hours, and its
    age is no step of the run."""

    def __init__(self, count_start_up: bool = False) -> None:
        self.seconds: dict[str, float] = {}
        self.count_start_up = count_start_up

    @contextmanager
    def step(self, name: str, announce: bool = True):
        if self.count_start_up and not self.seconds:
            age = process_age()
            if age is not None:
                self.seconds["start-up (inv, imports, settings)"] = round(age, 2)
        if announce:
            print(f"==> {name}", flush=True)
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 2)


JOB_NAME = r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"  # SageMaker's training job names; also runs/<name>


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


def titanic_channels(settings: Settings) -> dict[str, str]:
    """No --channel for the Titanic theme: its example reads the staged Titanic data, as `inv deploy` does (staged
    inside the run flow, its time the run's `data` step)."""
    if settings.theme != TITANIC_THEME:
        return {}
    staged = data.split_and_stage(settings)
    print(f"channels: none given; the staged Titanic data ({', '.join(staged.channels)})", flush=True)
    return {name: str(folder) for name, folder in staged.channels.items()}


@dataclass
class TitanicProgram:
    """The Titanic program (`train` in the image) on the staged Titanic data; `inv deploy` builds the kernel first."""

    source: str | None = None
    builds_kernel: bool = True
    name: str = "titanic"
    script: None = None
    checks_image: bool = True  # SageMaker: the image trains on a sample before the push
    job_name: str = ""

    def preflight_channels(self, settings: Settings) -> dict:
        return data.split_and_stage(settings, self.source).channels

    def local_plan(self, settings: Settings) -> str:
        return plans.local_plan(settings)

    def run(self, target, draft: RunDraft, channels: dict, detach: bool) -> Path:
        return target.train(draft, self, channels, detach)

    def sagemaker_plan(self, settings: Settings) -> str:
        return plans.sagemaker_plan(settings)

    def local_channels(self, settings: Settings, timer: Timer, staging: Path) -> tuple[dict, dict]:
        with timer.step("data"):
            staged = data.split_and_stage(settings, self.source)
        return staged.channels, {"data": titanic_data(staged)}

    def sagemaker_channels(self, settings: Settings, timer: Timer, s3) -> tuple[dict, dict]:
        with timer.step("data"):
            staged = data.split_and_stage(settings, self.source)
            uploaded = s3_data.upload(settings, s3, staged)
        objects = {"objects": uploaded.objects, "bucket_actions": uploaded.bucket_actions}
        return uploaded.channels, {"data": {**titanic_data(staged), **objects}}

    def record_fields(self, settings: Settings, job_name: str, target) -> dict:
        return {
            "hyperparameters": settings.hyperparameters,
            "reproduce": reproduce_commands(settings, target, job_name),
        }


@dataclass
class ScriptProgram:
    """Your entry point in the theme's image (script mode) with its channels (a folder or file, or s3://)."""

    script: script_mode.ScriptMode
    channels: dict[str, str] | None = None  # None: the staged Titanic data (the tabular theme without --channel)
    builds_kernel: bool = False
    checks_image: bool = False
    job_name: str = ""

    @property
    def name(self) -> str:
        return self.script.entry_point

    def stage_code(self, run_dir: Path) -> None:
        """The job runs a copy of the code (the source dir and its dependencies), kept with the run."""
        if self.script.code_dir is None:
            code = script_mode.stage_code(self.script, run_dir / "code")
            self.script = dataclasses.replace(self.script, code_dir=code)

    def _channels(self, settings: Settings, timer: Timer) -> dict[str, str]:
        if self.channels is None:
            with timer.step("data"):
                self.channels = titanic_channels(settings)
        return self.channels

    def run(self, target, draft: RunDraft, channels: dict, detach: bool) -> Path:
        return target.train(draft, self, channels, detach)

    def local_plan(self, settings: Settings) -> str:
        head = plans.script_plan(settings, self.script, self.channels, plans.image_step(settings, push=False))
        return "\n".join(head + plans.script_steps_local(settings, self.script, self.channels))

    def sagemaker_plan(self, settings: Settings) -> str:
        head = plans.script_plan(settings, self.script, self.channels, plans.image_step(settings, push=True))
        return "\n".join(head + plans.script_steps_sagemaker(settings, self.script, self.channels))

    def local_channels(self, settings: Settings, timer: Timer, staging: Path) -> tuple[dict, dict]:
        self.stage_code(staging.parent)
        return script_mode.local_folders(self._channels(settings, timer), staging), {}

    def sagemaker_channels(self, settings: Settings, timer: Timer, s3) -> tuple[dict, dict]:
        self.stage_code(settings.paths.run(self.job_name))
        channels = self._channels(settings, timer)
        with timer.step("channels"):
            return s3_data.upload_channels(settings, s3, channels).channels, {}

    def record_fields(self, settings: Settings, job_name: str, target) -> dict:
        return {
            "hyperparameters": self.script.hyperparameters,
            "entry_point": self.script.entry_point,
            "source_dir": str(self.script.source_dir),
            "dependencies": [str(path) for path in self.script.dependencies] or None,
            "code": str(self.script.code_dir) if self.script.code_dir else None,
            "shipped": self.script.shipped_summary(),
            "metric_definitions": self.script.metric_definitions,
            "reproduce": script_reproduce_commands(settings),
        }


@dataclass
class RecordedProgram:
    """A detached run's program as its record holds it (the Titanic data, a script or a processing job), written
    again when `inv job.attach` completes the record."""

    record: report.RunRecord
    builds_kernel: bool = False
    checks_image: bool = False

    def record_fields(self, settings: Settings, job_name: str, target) -> dict:
        return {**self.record.program_fields(), "versions": self.record.versions}

    def run(self, target, draft: RunDraft, channels: dict, detach: bool) -> Path:
        job = target.process if self.record.kind == "processing" else target.train
        return job(draft, self, channels, detach)


def execute(
    settings: Settings,
    program,
    target,
    job_name: str,
    timer: Timer,
    allow_drift: bool,
    detach: bool,
    dry_run: bool = False,
) -> Path | None:
    """The one run flow, for either program on either target; `dry_run`: the target's plan for the program, printed,
    and nothing called."""
    if dry_run:
        print(target.plan(settings, program), flush=True)
        return None
    settings = target.prepare(settings, timer, program)
    if program.builds_kernel:
        with timer.step("kernel"):
            kernels.create_kernel(settings)
    built = target.publish(settings, timer, program)
    checked = target.check_parity(settings, built, allow_drift, timer)
    channels, data_fields = target.hand_over(settings, timer, program, job_name)
    draft = RunDraft(settings, job_name, built, checked, timer).add(**program.record_fields(settings, job_name, target))
    return program.run(target, draft.add(**data_fields), channels, detach)


def launch(
    settings: Settings,
    program,
    job_name: str | None,
    allow_drift: bool,
    skip_preflight: bool,
    detach: bool,
    dry_run: bool,
    timer: Timer | None,
) -> Path | None:
    """What every kind of run starts with: (unless a dry run) the SDK imported in the background while the first
    steps wait on the kernel script, the build and parity, and the job's name claimed; then the target TARGET names
    and the flow. `timer`: the run's, when its caller started it (the CLI: at the process's start)."""
    if not dry_run:
        sdk.prefetch()
        job_name = program.job_name = claim_job_name(settings, job_name, program.name)
    target = targets.for_settings(settings, skip_preflight, detach)
    return execute(settings, program, target, job_name, timer or Timer(), allow_drift, detach, dry_run)


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
    timer: Timer | None = None,
) -> Path | None:
    """`inv deploy` / `inv train`: the Titanic program on either target; a dry run prints the plan and calls nothing."""
    program = TitanicProgram(source=source, builds_kernel=not skip_kernel)
    return launch(settings, program, job_name, allow_drift, skip_preflight, detach, dry_run, timer)


def run_script(
    settings: Settings,
    *,
    channels: dict[str, str] | None,
    hyperparameters: dict[str, str],
    metric_definitions: list[dict[str, str]] | None = None,
    dependencies: list[str] | None = None,
    job_name: str | None = None,
    allow_drift: bool = False,
    skip_preflight: bool = False,
    detach: bool = False,
    dry_run: bool = False,
    timer: Timer | None = None,
) -> Path | None:
    """`inv train --entry-point FILE`: the user's code as a job in the theme's image (local mode or SageMaker).
    `channels` None: the staged Titanic data on the tabular theme (none on another); {}: no channel at all."""
    script = script_mode.prepare(settings, hyperparameters, metric_definitions, dependencies)
    if channels is None and settings.theme != TITANIC_THEME:
        channels = {}
    program = ScriptProgram(script, channels)
    return launch(settings, program, job_name, allow_drift, skip_preflight, detach, dry_run, timer)


def run_process(
    settings: Settings,
    *,
    inputs: list,
    outputs: list,
    arguments: list[str],
    job_name: str | None = None,
    allow_drift: bool = False,
    skip_preflight: bool = False,
    detach: bool = False,
    dry_run: bool = False,
    timer: Timer | None = None,
) -> Path | None:
    """`inv process --code FILE`: a processing job in the theme's image (local mode or SageMaker Processing)."""
    spec = processing.prepare(settings, inputs, outputs, arguments)
    program = processing.ProcessingProgram(spec)
    return launch(settings, program, job_name, allow_drift, skip_preflight, detach, dry_run, timer)


def attach(settings: Settings, job_name: str) -> Path:
    """`inv job.attach NAME`: follow a SageMaker job started with --detach until it ends (Ctrl-C stops it), then
    collect its results into runs/<job>/ and complete its record."""
    if not re.fullmatch(JOB_NAME, job_name):
        raise ConfigError(f"job name {job_name!r} is invalid: letters, digits and '-', at most 63 characters")
    run_json = settings.paths.run(job_name) / "run.json"
    try:
        record = report.RunRecord.load(run_json)
    except (OSError, ValueError, TypeError) as error:
        raise ConfigError(
            f"no readable run record {run_json} ({type(error).__name__}): attach follows jobs started here with "
            "`inv train|deploy|process --target sagemaker --detach`"
        ) from None
    if not getattr(targets.TARGETS.get(record.target), "detachable", False):
        raise ConfigError(f"{job_name} ran with TARGET={record.target}: there is no SageMaker job to attach to")
    if record.status != training_job.IN_PROGRESS:
        raise ConfigError(f"{job_name} has already ended ({record.status}): its results are in {run_json.parent}")
    # Where the run put its things is in its record: attaching needs no bucket, repository or role in .env.
    bucket, _, prefix = (record.s3_prefix_uri or "").removeprefix("s3://").partition("/")
    settings = settings.replace(
        target=record.target, theme=record.theme, aws_region=record.region,
        s3_bucket=bucket or settings.s3_bucket, s3_prefix=prefix or settings.s3_prefix,
        ecr_repository=record.ecr_repository or settings.ecr_repository,
        sagemaker_role_arn=record.role_arn or settings.sagemaker_role_arn,
    )  # fmt: skip
    timer = Timer()
    timer.seconds.update(record.timings)
    return execute(settings, RecordedProgram(record), targets.AttachedTarget(record), job_name, timer, False, False)
