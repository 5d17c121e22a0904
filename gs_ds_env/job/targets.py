"""Where a job runs, behind one interface (as the SDK's LocalSession stands in for SageMaker): this machine in local
mode, or SageMaker. deploy.execute calls, in order, `prepare` (SageMaker: the cheap preflight, the account, the
instance), `publish` (the image: built here; on SageMaker also checked and pushed to ECR), `hand_over` (the
program's channels: mounted folders, or S3), then `train` (the job, its results and its record, also when it
fails or is stopped).
"""

from __future__ import annotations

from pathlib import Path

from gs_ds_env import aws, image
from gs_ds_env.aws import instance
from gs_ds_env.data import s3_data
from gs_ds_env.job import local_job, report, sagemaker_job, training_job
from gs_ds_env.ops import preflight
from gs_ds_env.settings import Settings


class LocalTarget:
    """SageMaker local mode: the real image, this machine, no AWS account."""

    def prepare(self, settings: Settings, timer) -> Settings:
        return settings

    def publish(self, settings: Settings, timer, program) -> image.BuiltImage:
        with timer.step("build"):
            return image.build(settings)

    def hand_over(self, settings: Settings, timer, program, job_name: str) -> tuple[dict, dict]:
        return program.local_channels(settings, timer, settings.paths.run(job_name) / "channels")

    def train(self, settings, timer, program, built, checked, channels: dict, job_name: str, fields: dict, detach):
        def failed(**outcome):
            report.write_run(
                settings, job_name, built, checked, None, timer.seconds, [],
                channels={k: str(v) for k, v in channels.items()}, **fields, **outcome,
            )  # fmt: skip

        with timer.step("train"), report.recording_failures(failed):
            result = local_job.train_local(settings, built.uri, channels, job_name, script=program.script)
        with timer.step("pictures (from output.tar.gz)", announce=False):
            # The pictures a local-mode job left in output.tar.gz (beside model.tar.gz), unpacked into the run folder.
            outputs = Path(result.model_artifact).with_name("output.tar.gz")
            pictures = report.extract_pictures(outputs, settings.paths.run(job_name))
        return report.write_run(
            settings, job_name, built, checked, result, timer.seconds, pictures, channels=result.channels,
            output_path=str(Path(result.model_artifact).parent), **fields,
        )  # fmt: skip


class SageMakerTarget:
    """SageMaker: what is paid for starts only after the checks that can stop it for free."""

    def __init__(self, skip_preflight: bool = False) -> None:
        self.skip_preflight = skip_preflight
        self.boto_session = self.account = self.choice = None

    def prepare(self, settings: Settings, timer) -> Settings:
        """The cheap preflight, the account, and the instance choice (a zero quota stops here, before anything slow
        or paid). Returns the settings with INSTANCE_TYPE resolved (auto -> the chosen type)."""
        self.boto_session = aws.session(settings)
        if not self.skip_preflight:
            with timer.step("preflight"):
                stop_on_failures(preflight.cheap_checks(settings, self.boto_session))
        with timer.step("account and instance"):
            self.account = aws.account_id(self.boto_session)
            self.choice = instance.choose(settings, self.boto_session)
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

    def train(self, settings, timer, program, built, checked, channels: dict, job_name: str, fields: dict, detach):
        job = SageMakerJob(settings, self.boto_session, self.account, self.choice, built, checked, timer, job_name)
        return job.run(channels, program.script, detach, output_path=s3_data.uri(settings, "output"), **fields)


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


def sagemaker_fields(
    settings: Settings, account: str, choice, result: training_job.JobResult | None, job_name: str
) -> dict:
    """The run record's SageMaker part: account, resources, instance evidence, bill, logs, console links (the
    job's own facts, `result`, once it has ended)."""
    urls = sagemaker_job.console_urls(settings.aws_region, job_name)
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


class SageMakerJob:
    """The paid part: announce the cost ceiling, start the job, follow it (or return at once with --detach),
    collect its results, write its record — also when it fails or is stopped. `inv job.attach` resumes here."""

    def __init__(self, settings, boto_session, account, choice, pushed, checked, timer, job_name) -> None:
        self.settings, self.boto_session, self.account, self.choice = settings, boto_session, account, choice
        self.pushed, self.checked, self.timer, self.job_name = pushed, checked, timer, job_name
        self.run_dir = settings.paths.run(job_name)

    def write(self, result, pictures, channels, **fields) -> Path:
        target = sagemaker_fields(self.settings, self.account, self.choice, result, self.job_name)
        return report.write_run(
            self.settings, self.job_name, self.pushed, self.checked, result, self.timer.seconds, pictures,
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
            self.write(None, [], channels, **fields, **outcome)

        with self.timer.step("train"), report.recording_failures(failed):
            sagemaker_job.run_on_sagemaker(
                settings, self.boto_session, self.pushed.uri, channels, self.job_name, script, detach=detach
            )
        if detach:
            run_json = self.write(None, [], channels, status=training_job.IN_PROGRESS, **fields)
            print(
                f"training job {self.job_name} started and left running (--detach): follow it and collect its "
                f"results with `inv job.attach {self.job_name}`; stop it with "
                f"`aws sagemaker stop-training-job --training-job-name {self.job_name}`",
                flush=True,
            )
            return run_json
        return self.collect(channels, script.metric_definitions if script else None, **fields)

    def collect(self, channels: dict[str, str], definitions, **fields) -> Path:
        def failed(**outcome):
            self.write(None, [], channels, **fields, **outcome)

        with self.timer.step("results"), report.recording_failures(failed):
            result = sagemaker_job.collect_sagemaker(
                self.settings, self.boto_session, self.job_name, self.choice.price, self.run_dir, definitions
            )
            output = sagemaker_job.fetch_output(self.boto_session, result.model_artifact, self.run_dir)
            pictures = report.extract_pictures(output, self.run_dir) if output else []
        return self.write(result, pictures, channels, **fields)


class AttachedChoice:
    """The instance choice as the detached run recorded it (price and evidence), for the attached run's record."""

    def __init__(self, price: float | None, evidence: str | None) -> None:
        self.price, self._evidence = price, evidence

    def evidence(self) -> str | None:
        return self._evidence
