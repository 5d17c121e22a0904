"""Your script, as SageMaker would run it: what `inv train --entry-point` checks before anything runs (the entry
point and what its source dir and dependencies ship, channels, hyperparameters, metric definitions, the job's name).
Nothing is added to what the script receives: its hyperparameters are exactly yours (plus the SDK's own
`sagemaker_*`).

The code a job runs is a copy, runs/<job>/code/: the source dir with each dependency beside the entry point (the
SDK's `dependencies=[...]` layout), the same on both targets (local mode mounts it; on SageMaker the SDK tars it). It
stays with the run: `inv serve --run` serves with it, whatever happened to the source dir since."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from gs_ds_env.job import metrics
from gs_ds_env.kernel import locks
from gs_ds_env.settings import ConfigError, Settings

# Script mode on several hosts: the toolkit starts the script with torchrun (what the SDK's PyTorch estimator
# sets for distribution={"torch_distributed": {"enabled": True}}; the generic Estimator takes it as a hyperparameter).
TORCH_DISTRIBUTED = "sagemaker_torch_distributed_enabled"
# CreateTrainingJob's limits: HyperParameters (the SDK adds up to 5 sagemaker_* keys), channels (InputDataConfig).
MAX_HYPERPARAMETERS, MAX_KEY, MAX_VALUE = 100 - 5, 256, 2500
MAX_CHANNELS = 20
CHANNEL_NAME = re.compile(r"[A-Za-z0-9.\-_]{1,64}")
HYPERPARAMETER_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
# The project's own programs read their seed here; a user's script is given nothing it did not ask for.
SEED_VARIABLE = "GS_SEED"


@dataclass(frozen=True)
class ScriptMode:
    """The user's code: an entry point inside source_dir, its hyperparameters and metric definitions."""

    entry_point: str  # relative to source_dir
    source_dir: Path
    hyperparameters: dict[str, str]
    metric_definitions: list[dict[str, str]] = field(default_factory=list)
    shipped: list[tuple[str, int]] = field(default_factory=list)  # (path in the code, bytes)
    dependencies: list[Path] = field(default_factory=list)  # folders or files copied beside the entry point
    code_dir: Path | None = None  # the copy the job runs (runs/<job>/code), once staged

    @property
    def shipped_bytes(self) -> int:
        return sum(size for _, size in self.shipped)

    def shipped_summary(self, most: int = 10) -> str:
        names = [name for name, _ in self.shipped]
        listed = ", ".join(names[:most]) + (f", … {len(names) - most} more" if len(names) > most else "")
        return f"{len(names)} file(s), {self.shipped_bytes / 1e3:.1f} kB: {listed}"


def shipped_files(source_dir: Path) -> list[tuple[str, int]]:
    """Every file the source dir ships (the SDK tars it with links followed; local mode mounts it). A link that
    leads outside it would ship (on SageMaker) or not ship (locally) a file that is not part of the code: refused."""
    root = source_dir.resolve()
    files = []
    for folder, subfolders, names in os.walk(root, followlinks=False):
        for name in sorted(subfolders + names):
            path = Path(folder) / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise ConfigError(
                    f"SOURCE_DIR {str(root)!r} holds a link {path.relative_to(root)} -> {os.readlink(path)}, which leads "
                    "outside it: the job would ship that file on SageMaker and not in local mode; copy what the code "
                    "needs into the folder and remove the link"
                )
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_file():
                files.append((str(path.relative_to(root)), path.stat().st_size))
        subfolders[:] = [name for name in subfolders if name != "__pycache__"]
    return sorted(files)


def parse_dependencies(specs: list[str], source_dir: Path) -> list[Path]:
    """--dependency PATH (repeatable, the SDK's `dependencies`): a folder or file copied beside the entry point under
    its own name; a name the source dir already has, or two dependencies of one name, would overwrite: refused."""
    dependencies: list[Path] = []
    taken = {path.name: "the source dir" for path in source_dir.iterdir()} if source_dir.is_dir() else {}
    for spec in specs:
        if not spec.strip():
            raise ConfigError("--dependency is empty: give a folder or a file, e.g. --dependency lib/common")
        path = Path(spec).expanduser().resolve()
        if not path.exists():
            raise ConfigError(f"--dependency {spec}: it does not exist")
        if path.name in taken:
            raise ConfigError(
                f"--dependency {spec}: {taken[path.name]} already has a {path.name!r}, which it would overwrite beside "
                "the entry point: rename one"
            )
        if path.is_dir():
            shipped_files(path)  # a link leading out of it is refused, as for the source dir
        taken[path.name] = f"--dependency {spec}"
        dependencies.append(path)
    return dependencies


def prepare(
    settings: Settings,
    hyperparameters: dict[str, str],
    metric_definitions: list[dict[str, str]] | None = None,
    dependencies: list[str] | None = None,
) -> ScriptMode:
    """ENTRY_POINT / SOURCE_DIR checked and made relative: the entry point must be a file inside the source dir."""
    if not settings.entry_point.strip():
        raise ConfigError("ENTRY_POINT is empty: give the script to run, e.g. --entry-point train.py")
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
    shipped = shipped_files(source_dir)
    extra = parse_dependencies(dependencies or [], source_dir)
    for dependency in extra:
        if dependency.is_dir():
            shipped += [(f"{dependency.name}/{name}", size) for name, size in shipped_files(dependency)]
        else:
            shipped.append((dependency.name, dependency.stat().st_size))
    defaults = {}
    if settings.instance_count > 1 and locks.has_torch(settings.theme_files.lock):
        defaults[TORCH_DISTRIBUTED] = "true"  # torchrun on every host (a --hyperparameter overrides)
    return ScriptMode(
        str(entry.resolve().relative_to(source_dir)),
        source_dir,
        {**defaults, **hyperparameters},
        metrics.for_job(metric_definitions or []),
        sorted(shipped),
        extra,
    )


def stage_code(script: ScriptMode, destination: Path) -> Path:
    """The code the job runs, copied into `destination`: the source dir, each dependency beside the entry point.
    Links that stay inside are followed (the SDK's tar follows them too); caches are left out."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    shutil.copytree(script.source_dir, destination, ignore=ignore)
    for dependency in script.dependencies:
        target = destination / dependency.name
        if dependency.is_dir():
            shutil.copytree(dependency, target, ignore=ignore)
        else:
            shutil.copy2(dependency, target)
    return destination


def parse_hyperparameters(specs: list[str]) -> dict[str, str]:
    """--hyperparameter key=value (repeatable) -> exactly these; refused before anything runs when SageMaker
    would refuse them (key twice, too many, too long)."""
    values: dict[str, str] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not HYPERPARAMETER_KEY.fullmatch(key):
            raise ConfigError(f"--hyperparameter {spec!r} is not key=value: e.g. --hyperparameter horizon=12")
        if key in values:
            raise ConfigError(f"--hyperparameter {key!r} is given twice ({values[key]!r} and {value!r}): keep one")
        if len(key) > MAX_KEY or len(value) > MAX_VALUE:
            raise ConfigError(
                f"--hyperparameter {key[:40]!r}: SageMaker allows keys of at most {MAX_KEY} characters and values "
                f"of at most {MAX_VALUE} (this one has {len(value)}); pass large inputs as a channel"
            )
        values[key] = value
    if len(values) > MAX_HYPERPARAMETERS:
        raise ConfigError(
            f"{len(values)} hyperparameters: SageMaker allows 100 per job, {MAX_HYPERPARAMETERS} beside the SDK's own"
        )
    return values


def parse_channels(specs: list[str], reads_s3: bool = False) -> dict[str, str]:
    """--channel name=path-or-s3-uri -> {name: a local folder or file, or an s3:// URI}. A folder ships as it is,
    a file ships alone (never its whole folder); on SageMaker local paths are uploaded under the prefix."""
    channels: dict[str, str] = {}
    for spec in specs:
        name, sep, where = spec.partition("=")
        if not sep or not CHANNEL_NAME.fullmatch(name) or name in {".", ".."}:
            raise ConfigError(
                f"--channel {spec!r} is not name=path (a name of letters, digits, '.', '-', '_'): "
                "e.g. --channel train=data/my-train"
            )
        if name in channels:
            raise ConfigError(f"--channel {name!r} is given twice: keep one")
        if not where.strip():
            raise ConfigError(
                f"--channel {spec!r} has no path: give a folder or a file, e.g. --channel {name}=data/{name}"
            )
        if where.startswith("s3://"):
            if not reads_s3:
                raise ConfigError(
                    f"--channel {spec!r}: local mode reads local folders; s3:// channels need TARGET=sagemaker"
                )
            channels[name] = where
            continue
        path = Path(where).expanduser().resolve()
        if not path.exists():
            raise ConfigError(f"--channel {spec!r}: {where} does not exist")
        if not (path.is_dir() or path.is_file()):
            raise ConfigError(f"--channel {spec!r}: {where} is neither a folder nor a file")
        channels[name] = str(path)
    if len(channels) > MAX_CHANNELS:
        raise ConfigError(f"{len(channels)} channels: SageMaker allows at most {MAX_CHANNELS} per job")
    return channels


def describe_channel(where: str) -> str:
    """How the plan names what a channel ships."""
    if where.startswith("s3://"):
        return where
    path = Path(where)
    if path.is_file():
        return f"{where} (this file alone)"
    files = [p for p in path.rglob("*") if p.is_file()]
    return f"{where}/ ({len(files)} file(s), {sum(p.stat().st_size for p in files) / 1e3:.1f} kB)"


def local_folders(channels: dict[str, str], staging: Path) -> dict[str, Path]:
    """Local mode mounts a channel's folder: a file channel gets a folder of its own under `staging` holding just
    that file (a hard link where the filesystem allows, else a copy)."""
    folders = {}
    for name, where in channels.items():
        path = Path(where)
        if path.is_file():
            folder = staging / name
            folder.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, folder / path.name)
            except OSError:
                shutil.copy2(path, folder / path.name)
            path = folder
        folders[name] = path
    return folders
