"""Where a job runs, behind one interface (as the SDK's LocalSession stands in for SageMaker): this machine in local
mode, or SageMaker. deploy.execute calls `plan` for a dry run (the program's plan for this target), else, in order,
`prepare` (SageMaker: the cheap preflight, the account, the instance), `publish` (the image: built here; on SageMaker
also checked and pushed to ECR), `check_parity` (the kernel venv against that image), `hand_over` (the program's
channels: mounted folders, or S3), then `train` or `process` (the job, its results and its record, written from the
run's draft, also when it fails or is stopped). AttachedTarget is SageMaker resumed from a detached run's record
(`inv job.attach`): the steps before the job return what the record holds.
"""

from __future__ import annotations

from pathlib import Path

from gs_ds_env import aws, image
from gs_ds_env.aws import instance
from gs_ds_env.data import s3_data
from gs_ds_env.job import local_job, report, sagemaker_job
from gs_ds_env.job.draft import RunDraft
from gs_ds_env.job.sagemaker_job import AttachedChoice, SageMakerJob
from gs_ds_env.kernel import parity
from gs_ds_env.ops import preflight
from gs_ds_env.settings import ConfigError, Settings


class Target:
    """What both targets share: the kernel venv is checked against the image the job will run."""

    def check_parity(self, settings: Settings, built: image.BuiltImage, allow_drift: bool, timer) -> tuple:
        with timer.step("parity"):
            return parity.before_run(settings, built, allow_drift)


class LocalTarget(Target):
    """SageMaker local mode: the real image, this machine, no AWS account."""

    detachable = False  # a local job runs on this machine while you wait
    reads_s3 = False  # channels and inputs are folders here, outputs land under runs/<job>/
    max_instances = 1  # one container

    def reproduce_setup(self, settings: Settings) -> list[str]:
        return []  # nothing beyond .env

    def reproduce_results(self, settings: Settings, job_name: str) -> list[str]:
        return []  # runs/<job>/ holds them

    def data_plan(self, settings: Settings) -> list[str]:
        return []  # the staged folders are the channels

    def upload_data(self, settings: Settings, staged) -> list[dict]:
        return []

    def __init__(self, skip_preflight: bool = False) -> None:
        """The preflight checks SageMaker's side (quotas, bucket, role, ECR): nothing to skip here."""

    def plan(self, settings: Settings, program) -> str:
        return program.local_plan(settings)

    def prepare(self, settings: Settings, timer, program=None) -> Settings:
        return settings

    def publish(self, settings: Settings, timer, program) -> image.BuiltImage:
        with timer.step("build"):
            return image.build(settings)

    def hand_over(self, settings: Settings, timer, program, job_name: str) -> tuple[dict, dict]:
        return program.local_channels(settings, timer, settings.paths.run(job_name) / "channels")

    def train(self, draft: RunDraft, program, channels: dict, detach: bool) -> Path:
        settings, timer = draft.settings, draft.timer
        with timer.step("train"), draft.on_failure({k: str(v) for k, v in channels.items()}):
            result = local_job.train_local(settings, draft.built.uri, channels, draft.job_name, script=program.script)
        with timer.step("pictures (from output.tar.gz)", announce=False):
            # The pictures a local-mode job left in output.tar.gz (beside model.tar.gz), unpacked into the run folder.
            outputs = Path(result.model_artifact).with_name("output.tar.gz")
            pictures = report.extract_pictures(outputs, settings.paths.run(draft.job_name))
        output_path = str(Path(result.model_artifact).parent)
        return draft.write(result, pictures, channels=result.channels, output_path=output_path)

    def process(self, draft: RunDraft, program, inputs: dict, detach: bool) -> Path:
        from gs_ds_env.job import processing_job

        with draft.timer.step("process"), draft.on_failure({k: str(v) for k, v in inputs.items()}):
            result = processing_job.run_local(draft.settings, draft.built.uri, program.spec, inputs, draft.job_name)
        return draft.write(result, [], channels=result.channels, outputs=result.outputs)


class SageMakerTarget(Target):
    """SageMaker: what is paid for starts only after the checks that can stop it for free."""

    detachable = True
    reads_s3 = True
    max_instances = 100

    # The settings a SageMaker run's reproduce commands list (beside THEME, PY, TARGET, …).
    SETTINGS_KEYS = (
        "AWS_REGION", "S3_BUCKET", "S3_PREFIX", "ECR_REPOSITORY", "SAGEMAKER_ROLE_ARN", "INSTANCE_TYPE",
        "INSTANCE_COUNT", "USE_SPOT", "MAX_RUN", "MAX_WAIT", "VOLUME_SIZE", "BASE_JOB_NAME",
    )  # fmt: skip

    def reproduce_setup(self, settings: Settings) -> list[str]:
        values = {key: getattr(settings, key.lower()) for key in self.SETTINGS_KEYS}
        lines = [f"# {key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in values.items()]
        return lines + ["inv iam-policy --out iam/   # attach these before the first run (README: AWS set-up)"]

    def reproduce_results(self, settings: Settings, job_name: str) -> list[str]:
        return [
            f"aws s3 ls {s3_data.uri(settings, 'output', job_name, 'output')}/",
            f"aws logs tail {aws.LOG_GROUP} --log-stream-name-prefix {job_name} --region {settings.aws_region}",
        ]

    def data_plan(self, settings: Settings) -> list[str]:
        return s3_data.upload_plan(settings)

    def upload_data(self, settings: Settings, staged) -> list[dict]:
        """The staged channels to S3 (each object once per content); the objects, each sent or already there."""
        return s3_data.upload(settings, aws.client(aws.session(settings), "s3"), staged).objects

    def __init__(self, skip_preflight: bool = False) -> None:
        self.skip_preflight = skip_preflight
        self.boto_session = self.account = self.choice = None

    def plan(self, settings: Settings, program) -> str:
        return program.sagemaker_plan(settings)

    def prepare(self, settings: Settings, timer, program=None) -> Settings:
        """The cheap preflight, the account, and the instance choice for the program's kind of job (a zero quota
        stops here, before anything slow or paid). Returns the settings with INSTANCE_TYPE resolved (auto -> the
        chosen type)."""
        self.boto_session = aws.session(settings)
        if not self.skip_preflight:
            with timer.step("preflight"):
                stop_on_failures(
                    preflight.cheap_checks(settings, self.boto_session, getattr(program, "kind", "training"))
                )
        with timer.step("account and instance"):
            self.account = aws.account_id(self.boto_session)
            self.choice = instance.choose(settings, self.boto_session, job=getattr(program, "kind", "training"))
            for warning in self.choice.warnings:
                print(f"warning: {warning}", flush=True)
            print(f"instance: {self.choice.instance_type} ({self.choice.reason})", flush=True)
        return settings.replace(instance_type=self.choice.instance_type)

    def publish(self, settings: Settings, timer, program) -> image.BuiltImage:
        if program.checks_image and not self.skip_preflight:
            # The image must train on a sample of the data and save a model before anything is pushed.
            with timer.step("image check"):
                built = image.build(settings)
                channels = program.preflight_channels(settings)
                stop_on_failures([preflight.image_check(settings, built.local_ref, channels)])
        with timer.step("build and push"):
            return image.push(settings, self.account)

    def hand_over(self, settings: Settings, timer, program, job_name: str) -> tuple[dict, dict]:
        return program.sagemaker_channels(settings, timer, aws.client(self.boto_session, "s3"))

    def train(self, draft: RunDraft, program, channels: dict, detach: bool) -> Path:
        draft.add(output_path=s3_data.uri(draft.settings, "output"))
        return SageMakerJob(draft, self.boto_session, self.account, self.choice).run(channels, program.script, detach)

    def process(self, draft: RunDraft, program, sources: dict, detach: bool) -> Path:
        from gs_ds_env.job.processing import CODE_INPUT
        from gs_ds_env.job.processing_job import SageMakerProcessing

        settings, job_name = draft.settings, draft.job_name
        job = SageMakerJob(draft, self.boto_session, self.account, self.choice)
        sources = dict(sources)
        code = sources.pop(CODE_INPUT)
        destinations = {
            o.name: o.destination or s3_data.uri(settings, "processing", job_name, o.name) for o in program.spec.outputs
        }
        draft.add(**processing_fields(settings, job_name), outputs={n: {"uri": u} for n, u in destinations.items()})
        price = self.choice.price
        if price is not None:
            ceiling = price * settings.instance_count * settings.max_run / 3600
            print(
                f"starting a paid processing job {job_name}: {settings.instance_count} x {settings.instance_type} at "
                f"{price:.3f} USD/h, at most {ceiling:.2f} USD (MAX_RUN bound)",
                flush=True,
            )
        running = SageMakerProcessing(settings, self.boto_session, job_name)
        with draft.timer.step("process"), job.on_failure(sources):
            running.start(program.spec, draft.built.uri, code, sources, destinations)
            if detach:
                return job.left_running(sources, "processing")
            result = running.result(running.wait(), sources)
        return job.write(result, [], sources, outputs=result.outputs)


class AttachedTarget(SageMakerTarget):
    """A SageMaker job started with --detach, resumed from its run record (`inv job.attach`): the account, the
    instance, the pushed image, parity and the channels are the record's (nothing built, pushed or sent again); the
    job step follows the running job, then collects its results as an attached run would have."""

    detachable = False

    def __init__(self, record: report.RunRecord) -> None:
        super().__init__(skip_preflight=True)
        self.record = record

    def prepare(self, settings: Settings, timer, program=None) -> Settings:
        self.boto_session = aws.session(settings)
        self.account = self.record.account
        self.choice = AttachedChoice(self.record.price_usd_per_hour, self.record.instance_evidence)
        return settings.replace(
            instance_type=self.record.instance_type or settings.instance_type,
            instance_count=self.record.instance_count or 1,
        )

    def publish(self, settings: Settings, timer, program) -> image.BuiltImage:
        return image.BuiltImage.from_record(self.record.image)

    def check_parity(self, settings: Settings, built: image.BuiltImage, allow_drift: bool, timer) -> tuple:
        return self.record.parity, None  # checked before the job started; the image's versions are in the record

    def hand_over(self, settings: Settings, timer, program, job_name: str) -> tuple[dict, dict]:
        return self.record.channels, {}

    def train(self, draft: RunDraft, program, channels: dict, detach: bool) -> Path:
        job = SageMakerJob(draft, self.boto_session, self.account, self.choice)
        with draft.timer.step("train"), job.on_failure(channels):
            sagemaker_job.wait_for(self.boto_session, draft.job_name)
        return job.collect(channels, self.record.metric_definitions)

    def process(self, draft: RunDraft, program, sources: dict, detach: bool) -> Path:
        from gs_ds_env.job.processing_job import SageMakerProcessing

        job = SageMakerJob(draft, self.boto_session, self.account, self.choice)
        draft.add(**processing_fields(draft.settings, draft.job_name))  # its log and console page, not training's
        running = SageMakerProcessing(draft.settings, self.boto_session, draft.job_name)
        with draft.timer.step("process"), job.on_failure(sources):
            result = running.result(running.wait(), sources)
        return job.write(result, [], sources, outputs=result.outputs)


TARGETS = {"local": LocalTarget, "sagemaker": SageMakerTarget}


def for_settings(settings: Settings, skip_preflight: bool = False, detach: bool = False):
    """The target TARGET names; a local job cannot be left running (--detach), it runs while you wait."""
    if detach and not TARGETS[settings.target].detachable:
        raise ConfigError("--detach is for TARGET=sagemaker: a local job runs on this machine while you wait")
    return TARGETS[settings.target](skip_preflight)


def check_instance_count(settings: Settings) -> None:
    if settings.instance_count > TARGETS[settings.target].max_instances:
        raise ConfigError("--instance-count above 1 is for TARGET=sagemaker: local mode runs one container")


def processing_fields(settings: Settings, job_name: str) -> dict:
    """Where a processing job's log and console page are (its record's SageMaker part, beside sagemaker_fields)."""
    console = f"https://{settings.aws_region}.console.aws.amazon.com/sagemaker/home?region={settings.aws_region}"
    return {
        "log_stream": f"{aws.PROCESSING_LOG_GROUP} / {job_name}/*",
        "console_url": f"{console}#/processing-jobs/{job_name}",
    }


def stop_on_failures(checks) -> None:
    for check in checks:
        print(f"preflight {check.status:4} {check.name}: {check.detail}", flush=True)
    failures = [check for check in checks if check.status == "fail"]
    if failures:
        raise preflight.PreflightFailed(
            "; ".join(f"{c.name}: {c.detail} (fix: {c.fix})" if c.fix else f"{c.name}: {c.detail}" for c in failures)
            + " — nothing was pushed or started (--skip-preflight "
            "to go on anyway)"
        )
