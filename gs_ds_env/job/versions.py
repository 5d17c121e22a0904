"""Every version a third person needs to rebuild the image and rerun the job, for the run record."""

from __future__ import annotations

import subprocess

from gs_ds_env.image import BuiltImage
from gs_ds_env.kernel import locks
from gs_ds_env.kernel.parity import Environment
from gs_ds_env.settings import Settings


def _base_image_id(reference: str) -> str:
    import docker

    try:
        return docker.from_env().images.get(reference).id
    except docker.errors.DockerException:
        return ""


def _uv_version(settings: Settings) -> str:
    try:
        return subprocess.run(
            [locks.uv_binary(settings.repo_root), "--version"], capture_output=True, text=True, check=True
        ).stdout.split()[1]
    except (locks.LockError, subprocess.CalledProcessError, IndexError):
        return ""


def _docker_version() -> str:
    import docker

    try:
        return docker.from_env().version().get("Version", "")
    except docker.errors.DockerException:
        return ""


def _git_commit(settings: Settings) -> str:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=settings.repo_root, capture_output=True, text=True)
    if head.returncode != 0:
        return ""
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=settings.repo_root, capture_output=True, text=True
    ).stdout.strip()
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def collect(settings: Settings, built: BuiltImage, image: Environment) -> dict:
    from gs_ds_env.sdk import sagemaker

    files = settings.theme_files
    return {
        "git_commit": _git_commit(settings),
        "python": image.python,
        "lock": str(files.lock.relative_to(settings.repo_root)),
        "lock_sha256": locks.sha256(files.lock),
        "base_image": built.base_image,
        "base_image_id": _base_image_id(built.base_image) if built.base_image else "",
        "torch_backend": settings.torch_backend,
        "uv": _uv_version(settings),
        "uv_in_image": locks.pins(settings.repo_root).get("UV_VERSION", ""),
        "sagemaker_sdk": sagemaker().__version__,
        "docker": _docker_version(),
        "image_packages": dict(sorted(image.packages.items())),
    }
