"""One typed settings object from `.env.example` < `.env` < environment, validated once."""

from __future__ import annotations

import dataclasses
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from gs_ds_env.errors import InputError
from gs_ds_env.paths import MIN_PYTHON, REPO_ROOT, Paths
from gs_ds_env.theme.files import Theme


class ConfigError(InputError):
    """A setting is missing or malformed; the message names the key and how to fix it."""


@dataclass(frozen=True)
class Settings:
    theme: str
    py: str
    torch_backend: str
    working_dir: Path
    base_image: str
    build_ca_bundle: str
    image_name: str
    target: str
    titanic_csv: str
    titanic_url: str
    titanic_sha256: str
    validation_fraction: float
    seed: int
    model: str
    n_estimators: int
    max_depth: int
    learning_rate: float
    aws_region: str
    aws_profile: str
    s3_bucket: str
    s3_prefix: str
    ecr_repository: str
    ecr_registry: str
    ecr_tag_immutable: bool
    sagemaker_role_arn: str
    scheduler_role_arn: str
    notebook_instance_name: str
    instance_type: str
    instance_count: int
    use_spot: bool
    max_run: int
    max_wait: int
    volume_size: int
    base_job_name: str
    serve_port: int
    status_max_hours: float
    entry_point: str
    source_dir: str
    tags: dict[str, str] = field(default_factory=dict)
    repo_root: Path = REPO_ROOT

    def replace(self, **changes) -> Settings:
        """A copy with `changes`, checked like the original: e.g. INSTANCE_TYPE=auto once the instance is chosen."""
        updated = dataclasses.replace(self, **changes)
        _validate(updated)
        return updated

    @property
    def on_aws(self) -> bool:
        """TARGET=sagemaker: jobs, images and data are on AWS (the AWS keys are required; status looks there)."""
        return self.target == "sagemaker"

    @property
    def kernel_name(self) -> str:
        return f"{self.theme}_{self.py.replace('.', '')}"

    @property
    def paths(self) -> Paths:
        return Paths(self.repo_root, self.working_dir)

    @property
    def theme_files(self) -> Theme:
        """The paths of this run's theme (lock, requirement lists, venv, manifest, smoke test)."""
        return self.paths.theme(self.theme)

    @property
    def runs_dir(self) -> Path:
        return self.paths.runs

    @property
    def data_dir(self) -> Path:
        return self.paths.data

    @property
    def hyperparameters(self) -> dict[str, str]:
        return {
            "model": self.model,
            "n_estimators": str(self.n_estimators),
            "max_depth": str(self.max_depth),
            "learning_rate": str(self.learning_rate),
            "seed": str(self.seed),
        }


def read_env_file(path: Path) -> dict[str, str]:
    """One .env file as python-dotenv reads it, but a line it cannot parse (`MAX_DEPTH 500`, an unclosed quote)
    or bytes that are not UTF-8 are refused, naming the line, instead of being skipped with a warning."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise ConfigError(f"{path} line {line} is not UTF-8 text: save the file as UTF-8") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            statement = binding.original.string.strip().splitlines()[0]
            key = re.match(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)", statement)
            named = f" (key {key.group(1)})" if key else ""
            raise ConfigError(
                f"{path} line {binding.original.line}{named} is not KEY=value: {statement[:80]!r}; write it as "
                "KEY=value (quotes closed on the same line) or remove it"
            )
    return {key: value or "" for key, value in dotenv_values(stream=io.StringIO(text)).items()}


def _layers(repo_root: Path, env_file: Path | None) -> dict[str, str]:
    values: dict[str, str] = {}
    for path in (repo_root / ".env.example", env_file or repo_root / ".env"):
        if path.is_file():
            values.update(read_env_file(path))
    values.update({k: v for k, v in os.environ.items() if k in values})
    return values


def _default_working_dir() -> Path:
    sagemaker_home = Path("/home/ec2-user/SageMaker")
    if sagemaker_home.is_dir():
        return sagemaker_home / ".myenv"
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "gs-ds-env"


def _typed(raw: dict[str, str], key: str, kind: type):
    value = raw.get(key, "").strip()
    if kind is str:
        return value
    if value == "":
        raise ConfigError(f"{key} is missing: set it in .env (see .env.example for its meaning)")
    try:
        if kind is bool:
            lowered = value.lower()
            if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(value)
            return lowered in {"true", "1", "yes"}
        return kind(value)
    except ValueError:
        raise ConfigError(f"{key}={value!r} is not a valid {kind.__name__}: fix it in .env") from None


# AWS tag limits (Tagging AWS resources, "Tag naming limits and requirements").
TAG_CHARS = re.compile(r"[\w\s.:/=+\-@]*")
MAX_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE = 50, 128, 256


def _parse_tags(raw: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ConfigError(f"TAGS item {item!r} is not key=value: use TAGS=team=ds,project=titanic")
        if key in tags:
            raise ConfigError(f"TAGS has the key {key!r} twice: keep one")
        if key.lower().startswith("aws:"):
            raise ConfigError(f"TAGS key {key!r} uses the prefix 'aws:', which AWS reserves: rename it")
        if len(key) > MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            raise ConfigError(
                f"TAGS item {key!r}: keys may have at most {MAX_TAG_KEY} characters and values "
                f"{MAX_TAG_VALUE}: shorten it"
            )
        if not (TAG_CHARS.fullmatch(key) and TAG_CHARS.fullmatch(value)):
            raise ConfigError(
                f"TAGS item {item!r} has characters AWS tags do not allow: use letters, digits, "
                "spaces and _ . : / = + - @"
            )
        tags[key] = value
    if len(tags) > MAX_TAGS:
        raise ConfigError(f"TAGS has {len(tags)} tags; AWS allows at most {MAX_TAGS} per resource")
    return tags


def load_settings(repo_root: Path = REPO_ROOT, env_file: Path | None = None, **overrides) -> Settings:
    """Read the layers, type every value, validate once. `overrides` use field names (theme=..., py=...)."""
    raw = _layers(repo_root, env_file)
    kinds = {f.name: f.type for f in dataclasses.fields(Settings)}
    values = {}
    for name, kind in kinds.items():
        if name in {"tags", "repo_root", "working_dir"}:
            continue
        kind = {"str": str, "int": int, "float": float, "bool": bool}[kind]
        values[name] = _typed(raw, name.upper(), kind)
    working_dir = raw.get("WORKING_DIR", "").strip()
    values["working_dir"] = Path(working_dir).expanduser() if working_dir else _default_working_dir()
    if not values["working_dir"].is_absolute() or "$" in working_dir:
        raise ConfigError(
            f"WORKING_DIR={working_dir!r} is not an absolute path: set it to e.g. "
            "/home/ec2-user/SageMaker/.myenv (${HOME}/... is expanded), or leave it empty"
        )
    values["tags"] = _parse_tags(raw.get("TAGS", ""))
    values["repo_root"] = repo_root
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)
    _validate(settings)
    return settings


# The rules both languages apply (the bin/ scripts read the same file, bin/lib.sh's `check`): what a theme may be called
# (the folder themes/NAME, the kernel NAME_<pyver>, image tags, SageMaker names: gs_ds_env/theme/names.py), a Python
# version, a torch backend, an AWS region.
SHARED_RULES = {key: value or "" for key, value in dotenv_values(Path(__file__).with_name("rules.env")).items()}
THEME_NAME = SHARED_RULES["THEME_NAME"]

_RULES = {
    "theme": (
        THEME_NAME,
        "a theme name: lowercase letters, digits and single '-', starting with a letter, at most 32 characters",
    ),
    "py": (SHARED_RULES["PYTHON_VERSION"], "of the form 3.N or 3.NN, e.g. 3.12"),
    "torch_backend": (SHARED_RULES["TORCH_BACKEND"], "auto, none, cpu, cuNNN (e.g. cu126), rocmX.Y or xpu"),
    # The job name becomes runs/<name>-<timestamp> locally and the SageMaker job name: checked on both targets.
    "base_job_name": (r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,37}", "letters, digits and '-', at most 38 characters"),
    "aws_region": (SHARED_RULES["AWS_REGION"], "a region such as eu-west-1"),
    "target": (r"local|sagemaker", "local or sagemaker"),
    "model": (r"blend|xgboost|logistic", "blend, xgboost or logistic"),
    "titanic_sha256": (r"[0-9a-f]{64}", "a 64-character hex sha256"),
    # A Docker repository name (the build fails late on anything else), checked before any build.
    "image_name": (
        r"(?=.{1,128}$)[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*",
        "a Docker image name: lowercase letters, digits, '.', '_', '-' and '/' separators, e.g. gs-ds-env",
    ),
}

_AWS_RULES = {
    "s3_bucket": (
        r"(?!\d+\.\d+\.\d+\.\d+$)(?!.*\.\.)(?!xn--|sthree-|amzn-s3-demo-)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
        "a bucket name: 3-63 lowercase letters, digits, '.', '-', no '..', not an IP address",
    ),
    "ecr_repository": (
        r"(?=.{2,256}$)[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*",
        "an ECR repository name (2-256 lowercase characters, e.g. gs-ds-env-tabular)",
    ),
    "sagemaker_role_arn": (
        r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+",
        "arn:aws:iam::<12-digit account>:role/<name>",
    ),
    "instance_type": (r"auto|ml\.[a-z0-9]+\.[a-z0-9]+", "auto or an instance type such as ml.m5.large"),
    # Key prefixes only: a `*`, `?` or `$` would widen (or break) the least-privilege policy's ARNs, a newline
    # would be written into them, `..` or `//` make keys no console shows.
    "s3_prefix": (
        r"(?=.{1,200}$)[A-Za-z0-9!_.'()-]+(/[A-Za-z0-9!_.'()-]+)*",
        "a key prefix of letters, digits and ! _ . ' ( ) - separated by single '/', e.g. team/titanic (no *, no ..)",
    ),
}
# ECR_REGISTRY is optional: a host[:port], no scheme, no path.
REGISTRY = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?")
# SageMaker's documented limits (CreateTrainingJob: StoppingCondition, ResourceConfig).
MAX_RUNTIME_SECONDS = 28 * 24 * 3600
MAX_VOLUME_GB = 16384
# (field, lowest, highest, what it means): numeric settings the container or the API would reject late.
_RANGES = [
    ("seed", 0, 2**32 - 1, "a non-negative integer below 2**32 (numpy's seed range)"),
    ("n_estimators", 1, 100_000, "the number of boosting rounds, 1-100000"),
    ("max_depth", 1, 64, "the tree depth, 1-64"),
    ("learning_rate", 1e-6, 1.0, "the boosting learning rate, above 0 and at most 1"),
    ("max_run", 1, MAX_RUNTIME_SECONDS, f"seconds, 1-{MAX_RUNTIME_SECONDS} (SageMaker's 28-day limit)"),
    ("max_wait", 1, MAX_RUNTIME_SECONDS, f"seconds, 1-{MAX_RUNTIME_SECONDS} (SageMaker's 28-day limit)"),
    ("volume_size", 1, MAX_VOLUME_GB, f"GB per instance, 1-{MAX_VOLUME_GB}"),
    ("instance_count", 1, 100, "the number of training instances, 1-100"),
    ("serve_port", 1024, 65535, "the local endpoint's port on this machine, 1024-65535 (default 8080)"),
    ("status_max_hours", 0, 8760, "hours, 0-8760: `inv status` exits 1 when something has run longer"),
]


def _check(settings: Settings, rules: dict) -> None:
    for name, (pattern, meaning) in rules.items():
        value = getattr(settings, name)
        if value == "":
            raise ConfigError(f"{name.upper()} is missing: set it in .env ({meaning})")
        if not re.fullmatch(pattern, value) or (name == "s3_prefix" and ".." in value.split("/")):
            raise ConfigError(f"{name.upper()}={value!r} is malformed: expected {meaning}")


def _validate(settings: Settings) -> None:
    _check(settings, _RULES)
    if not settings.theme_files.root.is_dir():
        themes = settings.paths.themes()
        raise ConfigError(f"THEME={settings.theme!r} does not exist under themes/: choose one of {', '.join(themes)}")
    if int(settings.py.split(".")[1]) < int(MIN_PYTHON.split(".")[1]):
        raise ConfigError(
            f"PY={settings.py} is older than the theme locks support (Python >= {MIN_PYTHON}): "
            f"use PY={MIN_PYTHON} or newer"
        )
    if settings.build_ca_bundle and not Path(settings.build_ca_bundle).expanduser().is_file():
        raise ConfigError(
            f"BUILD_CA_BUNDLE={settings.build_ca_bundle!r} is not a file: give the PEM file of your proxy's CA "
            "(e.g. /usr/local/share/ca-certificates/corp.crt), or leave it empty"
        )
    if not 0.05 <= settings.validation_fraction <= 0.5:  # also false for nan
        raise ConfigError("VALIDATION_FRACTION must be between 0.05 and 0.5")
    for name, lowest, highest, meaning in _RANGES:
        value = getattr(settings, name)
        if not lowest <= value <= highest:  # nan and inf fail too
            raise ConfigError(f"{name.upper()}={value!r} is out of range: expected {meaning}")
    if settings.on_aws:
        validate_for_aws(settings)


def validate_for_aws(settings: Settings, keys: tuple[str, ...] | None = None) -> None:
    """The AWS keys, checked before any AWS call (also used by `inv push` / `inv data` on the sagemaker path);
    `keys`: only those a command uses (listing or deleting endpoints uses no bucket, repository or role)."""
    _check(settings, _AWS_RULES if keys is None else {key: _AWS_RULES[key] for key in keys})
    if keys is not None:
        return
    if settings.ecr_registry and not REGISTRY.fullmatch(settings.ecr_registry):
        raise ConfigError(
            f"ECR_REGISTRY={settings.ecr_registry!r} is not a registry host: use host[:port] without "
            "https:// or a path, or leave it empty for <account>.dkr.ecr.<region>.amazonaws.com"
        )
    if settings.use_spot and settings.max_wait < settings.max_run:
        raise ConfigError(f"MAX_WAIT={settings.max_wait} must be >= MAX_RUN={settings.max_run} when USE_SPOT=true")


def main(argv: list[str] | None = None) -> int:
    """`python -m gs_ds_env.settings [--repo-root DIR] --get KEY ...`: the validated value of each KEY, one a line,
    as inv would use it. What a standalone bin/ script asks instead of reading .env itself: python-dotenv stays
    the one reader of .env, these settings the one owner of its rules. A bad .env: one line, exit 2."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m gs_ds_env.settings")
    parser.add_argument("--repo-root", type=Path, default=REPO_ROOT)
    parser.add_argument("--get", nargs="+", required=True, metavar="KEY", help="e.g. WORKING_DIR")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(repo_root=args.repo_root.resolve())
        fields = {f.name for f in dataclasses.fields(Settings)}
        unknown = [key for key in args.get if key.lower() not in fields]
        if unknown:
            raise ConfigError(f"no setting {', '.join(unknown)}: keys are those of .env.example, e.g. WORKING_DIR")
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    for key in args.get:
        print(getattr(settings, key.lower()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
