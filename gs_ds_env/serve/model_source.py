"""Which model to serve, with which code, in which image: a run of this project (its record names all three), a
model.tar.gz, or an S3 URI (with --entry-point/--source-dir for code of a model trained elsewhere). The image is the
one the run trained in when it is still here, so the endpoint runs the same locked versions as the training job
(and the kernel). A script run's code is the copy the job ran (runs/<job>/code), as `estimator.deploy()` serves
the estimator's own entry point."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from gs_ds_env.job.report import RunRecord
from gs_ds_env.sdk import timestamp
from gs_ds_env.settings import ConfigError, Settings

RUN_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


@dataclass(frozen=True)
class Code:
    """The code a model may be served with: an entry point (relative to `root`) in a folder, and the dependencies
    that go beside it. It becomes the handler when the entry point defines one (prepare.place_code)."""

    entry_point: str
    root: Path
    origin: str  # how the plan and serve.md name it
    dependencies: tuple[Path, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ModelSource:
    archive: str  # a local model.tar.gz, or s3://
    theme: str
    py: str
    run: RunRecord | None = None
    run_dir: Path | None = None
    code: Code | None = None

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


def _run_code(record: RunRecord, run_dir: Path) -> Code | None:
    """A script run's code: the copy the job ran, else (a run from before the copy was kept) its source dir."""
    if not record.entry_point:
        return None
    copy = Path(record.code) if record.code else run_dir / "code"
    if copy.is_dir():
        return Code(record.entry_point, copy, f"the entry point of run {record.job_name} ({record.entry_point})")
    if record.source_dir and (Path(record.source_dir) / record.entry_point).is_file():
        dependencies = tuple(Path(d) for d in record.dependencies or [])
        origin = (
            f"the entry point of run {record.job_name} ({record.entry_point}, from {record.source_dir} as it is now)"
        )
        return Code(record.entry_point, Path(record.source_dir), origin, dependencies)
    return None


def given_code(entry_point: str | None, source_dir: str | None, dependencies: list[str]) -> Code | None:
    """--entry-point FILE [--source-dir DIR] [--dependency PATH]: code for a model trained elsewhere."""
    if not entry_point:
        if source_dir or dependencies:
            raise ConfigError("--source-dir and --dependency go with --entry-point (the handler script)")
        return None
    entry = Path(entry_point).expanduser().resolve()
    if not entry.is_file():
        raise ConfigError(f"--entry-point {entry_point}: not a file (the script with model_fn, e.g. train.py)")
    root = Path(source_dir).expanduser().resolve() if source_dir else entry.parent
    if not root.is_dir() or not entry.is_relative_to(root):
        raise ConfigError(f"--entry-point {entry_point} is not inside --source-dir {source_dir}")
    found = []
    for spec in dependencies:
        path = Path(spec).expanduser().resolve()
        if not path.exists():
            raise ConfigError(f"--dependency {spec}: it does not exist")
        found.append(path)
    return Code(str(entry.relative_to(root)), root, f"--entry-point {entry_point}", tuple(found))


def _from_run(settings: Settings, run_dir: Path) -> ModelSource:
    try:
        record = RunRecord.load(run_dir / "run.json")
    except (OSError, ValueError, TypeError) as error:
        raise ConfigError(
            f"runs/{run_dir.name}/run.json cannot be read ({type(error).__name__}): it is damaged; serve another run "
            "or its model with --model-data runs/<job>/model.tar.gz"
        ) from None
    if record.kind == "processing":
        raise ConfigError(
            f"run {record.job_name} is a processing job: it made data, not a model; serve a training run "
            "(inv train) or its model with --model-data"
        )
    if record.status != "completed":
        raise ConfigError(f"run {record.job_name} is {record.status!r}: serve a completed run (see runs/*/report.md)")
    local = [record.model_local_copy, record.model_artifact]
    archive = next((str(p) for p in local if p and not p.startswith("s3://") and Path(p).is_file()), None)
    archive = archive or next((p for p in local if p and p.startswith("s3://")), None)
    if not archive:
        raise ConfigError(f"run {record.job_name} has no model.tar.gz left in {run_dir}: serve another run")
    py = record.kernel.rsplit("_", 1)[-1]
    return ModelSource(archive, record.theme, f"{py[0]}.{py[1:]}", record, run_dir, _run_code(record, run_dir))


def resolve(
    settings: Settings,
    run: str | None,
    model_data: str | None,
    theme_given: bool,
    code: Code | None = None,
    model_package: str | None = None,
) -> ModelSource:
    """--run NAME, --model-data PATH|s3://..., --model-package VERSION|ARN|latest-approved (the model registry a
    pipeline registers into), or else the newest completed run of the theme; `code` (given --entry-point) replaces
    a run's own."""
    if model_package:
        if run or model_data:
            raise ConfigError("give one of --run, --model-data and --model-package")
        from gs_ds_env.pipeline import registry

        version = registry.find(settings, model_package)
        print(f"model: {version.group} version {version.version} ({version.status}): {version.model}", flush=True)
        source = ModelSource(version.model, version.theme or settings.theme, version.py or settings.py)
        return dataclasses.replace(source, code=code) if code else source
    source = _resolve(settings, run, model_data, theme_given)
    return dataclasses.replace(source, code=code) if code else source


def _resolve(settings: Settings, run: str | None, model_data: str | None, theme_given: bool) -> ModelSource:
    if run and model_data:
        raise ConfigError("give --run or --model-data, not both")
    if model_data:
        if not model_data.startswith("s3://"):
            path = Path(model_data).expanduser()
            if not path.is_file() or not _looks_like_tar_gz(path):
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
        except ConfigError:
            continue
        if source.theme == settings.theme:
            return source
    raise ConfigError(
        f"no completed {settings.theme} run with a model under {settings.runs_dir}: run `make deploy` first, "
        "or pass --run NAME or --model-data PATH"
    )


def _looks_like_tar_gz(path: Path) -> bool:
    """A gzip file (model.tar.gz) or a plain tar: read from its first bytes, not by reading the whole archive."""
    with path.open("rb") as handle:
        head = handle.read(263)
    return head[:2] == b"\x1f\x8b" or head[257:262] == b"ustar"
