"""A theme's image, built (and pushed) by bin/gs-env-docker-build-push.sh (its results read from --result-file),
inspected with the docker SDK; the labels the script puts on it."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from gs_ds_env.kernel import locks
from gs_ds_env.settings import Settings

# Labels bin/gs-env-docker-build-push.sh puts on every theme image it builds.
CONTENT_LABEL = "gs-ds-env.content-tag"
THEME_LABEL = "gs-ds-env.theme"
CHECKOUT_LABEL = "gs-ds-env.checkout"  # the project folder the image was built from


def is_ours(settings: Settings, reference: str) -> bool:
    """registry/repo:tag or repo:tag in one of this project's repositories (IMAGE_NAME, ECR_REPOSITORY)."""
    return reference.rsplit(":", 1)[0].rsplit("/", 1)[-1] in {settings.image_name, settings.ecr_repository} - {""}


@dataclass(frozen=True)
class BuiltImage:
    uri: str  # what the training job runs: local name, or registry/repo:content-tag after a push
    content_tag: str
    local_ref: str = ""  # the same image under its local name (what parity and the report inspect)
    base_image: str = ""  # the base it was built on (digest-pinned unless BASE_IMAGE overrides it)
    digest: str = ""
    size_bytes: int = 0
    image_id: str = ""  # sha256:… of the local image: its content, so what was learnt about it once holds
    pushed: list[str] = field(default_factory=list)  # tags sent to the registry by this run (empty: already there)

    @classmethod
    def from_record(cls, record: dict) -> BuiltImage:
        """The image as a run record kept it (run.json's `image`)."""
        keys = ("uri", "content_tag", "size_bytes", "digest", "pushed", "image_id")
        return cls(**{key: record[key] for key in keys if key in record})


def build_push_command(
    settings: Settings, push: bool, account: str = "-", dry_run: bool = False, workspace: bool = False
) -> list[str]:
    cmd = [
        str(settings.repo_root / "bin/gs-env-docker-build-push.sh"),
        "--py",
        settings.py,
        "--torch-backend",
        settings.torch_backend,
        "--kind",
        settings.paths.theme(settings.theme).kind,
    ]
    # Resolved here, so the script parses nothing under inv (standalone it reads docker/pins.env itself).
    pins = locks.pins(settings.repo_root)
    if pins.get("UV_VERSION"):
        cmd += ["--uv-version", pins["UV_VERSION"]]
    base_image = settings.base_image or pins.get(locks.base_image_key(settings.py), "")
    if base_image:
        cmd += ["--base-image", base_image]
    if settings.build_ca_bundle:
        cmd += ["--ca-bundle", str(Path(settings.build_ca_bundle).expanduser())]
    if not push:
        cmd.append("--no-push")
    else:
        if settings.ecr_registry:
            cmd += ["--registry", settings.ecr_registry]
        if settings.ecr_tag_immutable:
            cmd.append("--immutable")
    if dry_run:
        cmd.append("--dry-run")
    if workspace:
        cmd.append("--workspace")
    repository = settings.ecr_repository if push else settings.image_name
    region = settings.aws_region if push else "-"
    return cmd + [settings.theme, account, region, repository, settings.kernel_name]


def _run(cmd: list[str], **run_options) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """Run the build/push script; its results come from --result-file (as docker build's --iidfile), not from
    parsing its output."""
    with tempfile.TemporaryDirectory(prefix="gs-image-") as scratch:
        result_file = Path(scratch) / "result.env"
        completed = subprocess.run([cmd[0], "--result-file", str(result_file), *cmd[1:]], check=True, **run_options)
        return completed, {key: value or "" for key, value in dotenv_values(result_file).items()}


def build(settings: Settings, dry_run: bool = False, workspace: bool = False) -> BuiltImage:
    """The theme's training image (or, `workspace`, its workspace variant: JupyterLab and the theme's kernel)."""
    _, result = _run(
        build_push_command(settings, push=False, dry_run=dry_run, workspace=workspace), stdout=subprocess.DEVNULL
    )
    image_id, size = ("", 0) if dry_run else identity(result["IMAGE_URI"])
    return BuiltImage(
        uri=result["IMAGE_URI"],
        content_tag=result["CONTENT_TAG"],
        local_ref=result["IMAGE_URI"],
        base_image=result.get("BASE_IMAGE", ""),
        size_bytes=size,
        image_id=image_id,
    )


def push(settings: Settings, account: str, workspace: bool = False) -> BuiltImage:
    _, result = _run(
        build_push_command(settings, push=True, account=account, workspace=workspace), stdout=subprocess.DEVNULL
    )
    local = f"{settings.ecr_repository}:{result['CONTENT_TAG']}"
    image_id, size = identity(local)
    return BuiltImage(
        uri=result["IMAGE_URI"],
        content_tag=result["CONTENT_TAG"],
        local_ref=local,
        base_image=result.get("BASE_IMAGE", ""),
        digest=result.get("IMAGE_DIGEST", ""),
        size_bytes=size,
        image_id=image_id,
        pushed=result.get("PUSHED", "").split(),
    )


@dataclass(frozen=True)
class PushPlan:
    """The script's own --dry-run: the commands it would run, in order (the by-hand recipe), and its results."""

    commands: list[str]
    image_uri: str
    content_tag: str


def push_plan(settings: Settings, account: str, workspace: bool = False) -> PushPlan:
    completed, results = _run(
        build_push_command(settings, push=True, account=account, dry_run=True, workspace=workspace),
        capture_output=True,
        text=True,
    )
    commands = [
        line.removeprefix("[image] [dry-run] ") for line in completed.stderr.splitlines() if "[dry-run]" in line
    ]
    return PushPlan(commands, results["IMAGE_URI"], results["CONTENT_TAG"])


def image_size(reference: str) -> int:
    return identity(reference)[1]


def identity(reference: str) -> tuple[str, int]:
    """(image id, size in bytes) of a local image."""
    import docker

    attrs = docker.from_env().images.get(reference).attrs
    return attrs["Id"], int(attrs["Size"])
