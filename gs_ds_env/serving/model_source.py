"""Which model to serve, and in which image: a run of this project (its record names both), a model.tar.gz, or an
S3 URI. The image is the one the run trained in when it is still here, so the endpoint runs the same locked
versions as the training job (and the kernel)."""

from __future__ import annotations

import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from gs_ds_env.job.report import RunRecord
from gs_ds_env.sdk import timestamp
from gs_ds_env.serving import ServeError
from gs_ds_env.settings import ConfigError, Settings

RUN_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


@dataclass(frozen=True)
class ModelSource:
    archive: str  # a local model.tar.gz, or s3://
    theme: str
    py: str
    run: RunRecord | None = None
    run_dir: Path | None = None

    @property
    def label(self) -> str:
        return f"run {self.run.job_name}" if self.run else self.archive

    def image_candidates(self, settings: Settings) -> list[str]:
        """Local names of the image the run trained in (a pushed run's image keeps its ECR repository's name)."""
        if not self.run:
            return []
        tag = self.run.image.get("content_tag", "")
        names = [self.run.image.get("uri", "")]
        if tag:
            names += [f"{settings.image_name}:{tag}", f"{settings.ecr_repository}:{tag}"]
        return [name for name in dict.fromkeys(names) if name]

    def resource_name(self, settings: Settings, kind: str = "") -> str:
        """A unique name for an endpoint (kind "") / local endpoint ("local") / transform job ("tr") of this model:
        the whole BASE_JOB_NAME first (the IAM policy allows only names that start with it), then kind and theme
        as far as SageMaker's 63 characters allow, then the SDK's millisecond stamp (two commands started in the
        same second do not collide)."""
        stamp, base = timestamp(), settings.base_job_name
        room = max(0, 63 - len(base) - len(stamp) - 2)
        middle = "-".join(filter(None, [kind, self.theme]))[:room].strip("-")
        return "-".join(filter(None, [base, middle, stamp]))

    def smoke_set(self) -> Path | None:
        """The run's validation channel when it is a local CSV folder (the Titanic run's), for the report's check."""
        channel = (self.run.channels if self.run else {}).get("validation", "")
        folder = Path(channel.removeprefix("file://")) if channel.startswith("file://") else None
        files = sorted(folder.glob("*.csv")) if folder and folder.is_dir() else []
        return files[0] if len(files) == 1 else None


def _from_run(settings: Settings, run_dir: Path) -> ModelSource:
    record = RunRecord.load(run_dir / "run.json")
    if record.status != "completed":
        raise ConfigError(f"run {record.job_name} is {record.status!r}: serve a completed run (see runs/*/report.md)")
    local = [record.model_local_copy, record.model_artifact]
    archive = next((str(p) for p in local if p and not p.startswith("s3://") and Path(p).is_file()), None)
    archive = archive or next((p for p in local if p and p.startswith("s3://")), None)
    if not archive:
        raise ConfigError(f"run {record.job_name} has no model.tar.gz left in {run_dir}: serve another run")
    py = record.kernel.rsplit("_", 1)[-1]
    return ModelSource(archive, record.theme, f"{py[0]}.{py[1:]}", record, run_dir)


def resolve(settings: Settings, run: str | None, model_data: str | None, theme_given: bool) -> ModelSource:
    """--run NAME, --model-data PATH|s3://..., or else the newest completed run of the theme."""
    if run and model_data:
        raise ConfigError("give --run or --model-data, not both")
    if model_data:
        if not model_data.startswith("s3://"):
            path = Path(model_data).expanduser()
            if not path.is_file() or not tarfile.is_tarfile(path):
                raise ConfigError(f"--model-data {model_data}: not a model.tar.gz file (or an s3:// URI)")
            model_data = str(path.resolve())
        return ModelSource(model_data, settings.theme, settings.py)
    if run:
        if not RUN_NAME.fullmatch(run):
            raise ConfigError(f"--run {run!r} is not a run name: letters, digits and '-', as listed under runs/")
        run_dir = settings.runs_dir / run
        if not (run_dir / "run.json").is_file():
            raise ConfigError(f"no run {run!r} under {settings.runs_dir}: pass the name of a folder there")
        source = _from_run(settings, run_dir)
        if theme_given and source.theme != settings.theme:
            raise ConfigError(f"run {run} trained theme {source.theme!r}, not {settings.theme!r}: drop --theme")
        return source
    candidates = sorted(
        (p.parent for p in settings.runs_dir.glob("*/run.json")), key=lambda p: (p / "run.json").stat().st_mtime
    )
    for run_dir in reversed(candidates):
        try:
            source = _from_run(settings, run_dir)
        except (ConfigError, ValueError, TypeError):
            continue
        if source.theme == settings.theme:
            return source
    raise ConfigError(
        f"no completed {settings.theme} run with a model under {settings.runs_dir}: run `make deploy` first, "
        "or pass --run NAME or --model-data PATH"
    )


def extract(source: ModelSource, settings: Settings, destination: Path) -> Path:
    """The model archive unpacked into `destination` (what /opt/ml/model holds on SageMaker); members that would
    land outside it, links and devices are refused."""
    destination.mkdir(parents=True, exist_ok=True)
    archive = source.archive
    if archive.startswith("s3://"):
        from gs_ds_env import aws

        bucket, _, key = archive.removeprefix("s3://").partition("/")
        local = destination.parent / "model.tar.gz"
        aws.session(settings).client("s3").download_file(bucket, key, str(local))
        archive = str(local)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(destination, filter="data")
    except (tarfile.TarError, OSError) as error:
        shutil.rmtree(destination, ignore_errors=True)
        raise ServeError(f"cannot unpack {source.archive}: {error}") from None
    return destination
