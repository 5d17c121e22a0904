"""The training job: one `sagemaker.estimator.Estimator`, run in local mode (Docker) or on SageMaker."""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from .settings import Settings
from .sm import SDK_CONFIG, sagemaker

# The training program prints `validation:auc=0.8712`; SageMaker turns these lines into job metrics.
METRIC_DEFINITIONS = [
    {"Name": f"{split}:{metric}", "Regex": f"^{split}:{metric}=([0-9.]+)"}
    for split in ("train", "validation")
    for metric in ("auc", "accuracy", "f1", "logloss")
]
LOCAL_ROLE = "arn:aws:iam::000000000000:role/local-mode-unused"  # local mode needs a role string, never uses it


@dataclass
class JobResult:
    job_name: str
    model_artifact: str
    metrics: dict[str, float]
    channels: dict[str, str]
    hyperparameters: dict[str, str]
    extra: dict = field(default_factory=dict)


def new_job_name(settings: Settings) -> str:
    return sagemaker().utils.name_from_base(settings.base_job_name)


def estimator(settings: Settings, image_uri: str, session, *, local: bool, output_path: str, role: str,
              instance_type: str, checkpoint_s3_uri: str | None = None):
    sagemaker()  # quiet the SDK before its first import
    from sagemaker.estimator import Estimator

    options = dict(
        image_uri=image_uri,
        role=role,
        instance_count=1 if local else settings.instance_count,
        instance_type="local" if local else instance_type,
        output_path=output_path,
        base_job_name=settings.base_job_name,
        hyperparameters=settings.hyperparameters,
        metric_definitions=METRIC_DEFINITIONS,
        sagemaker_session=session,
        # The debugger hook and profiler start extra processing jobs: they cost and use quota.
        debugger_hook_config=False,
        disable_profiler=True,
    )
    if not local:
        options.update(
            volume_size=settings.volume_size,
            max_run=settings.max_run,
            use_spot_instances=settings.use_spot,
            max_wait=settings.max_wait if settings.use_spot else None,
            checkpoint_s3_uri=checkpoint_s3_uri if settings.use_spot else None,
            tags=[{"Key": k, "Value": v} for k, v in settings.tags.items()] or None,
        )
    return Estimator(**options)


def local_session(settings: Settings, container_root: Path):
    import boto3

    sagemaker()
    from sagemaker.local import LocalSession

    session = LocalSession(boto_session=boto3.Session(region_name=settings.aws_region), sagemaker_config=SDK_CONFIG)
    session.config = {"local": {"local_code": True, "container_root": str(container_root)}}
    return session


def train_local(settings: Settings, image_uri: str, channels: dict[str, Path], job_name: str) -> JobResult:
    """Run the real image through SageMaker local mode; artifacts land in runs/<job>/."""
    run_dir = settings.runs_dir / job_name
    scratch = run_dir / "container"
    scratch.mkdir(parents=True, exist_ok=True)
    session = local_session(settings, scratch)
    inputs = {channel: f"file://{folder.resolve()}" for channel, folder in channels.items()}
    job = estimator(settings, image_uri, session, local=True, output_path=f"file://{run_dir.resolve()}",
                    role=LOCAL_ROLE, instance_type="local")
    job.fit(inputs, job_name=job_name, wait=True, logs=True)
    artifact = Path(job.model_data.removeprefix("file://"))
    metrics = read_metrics_from_tarball(artifact)
    return JobResult(job_name, str(artifact), metrics["metrics"], inputs, settings.hyperparameters,
                     extra={"training_seconds": metrics.get("training_seconds")})


def read_metrics_from_tarball(artifact: Path) -> dict:
    with tarfile.open(artifact) as archive:
        member = archive.extractfile("metrics.json")
        if member is None:
            raise RuntimeError(f"{artifact} holds no metrics.json: the training program did not finish")
        return json.load(member)
