"""`inv theme.remove`: a theme made by `inv theme.new` — its kernels (kernelspec and venv), its images and its
folder — and nothing of any other theme. The plan is printed first; --dry-run stops there."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from gs_ds_env.image import THEME_LABEL, is_ours
from gs_ds_env.kernel import kernels
from gs_ds_env.settings import Settings
from gs_ds_env.theme import ThemeError


@dataclass(frozen=True)
class Step:
    what: str
    kind: str  # kernel | image | folder
    target: str


def _image_references(settings: Settings, name: str) -> list[str]:
    """Every local tag of this theme's images (<theme>_<pyver> and <theme>_<pyver>-<content>) in this project's
    repositories (an image a user built FROM one inherits its label, never these tags)."""
    from docker.errors import DockerException

    import docker

    try:
        images = docker.from_env().images.list(filters={"label": f"{THEME_LABEL}={name}"})
    except DockerException:
        return []
    return sorted(
        reference
        for image in images
        for reference in image.tags
        if is_ours(settings, reference) and reference.rsplit(":", 1)[1].startswith(f"{name}_")
    )


def plan(settings: Settings, name: str) -> list[Step]:
    files = settings.paths.theme(name)
    if name not in settings.paths.themes():
        raise ThemeError(f"there is no theme {name!r}: `inv theme.list` shows the themes")
    if not files.created_by:
        raise ThemeError(
            f"theme {name!r} is one of the project's own (inv theme.new did not make it): refusing; "
            f"`git rm -r themes/{name}` if you really mean to"
        )
    steps = [
        Step(f"kernel {m.kernel_name}: its kernelspec and venv {m.venv}", "kernel", m.kernel_name)
        for m in kernels.manifests(settings.repo_root)
        if m.theme == name
    ]
    steps += [Step(f"image tag {reference}", "image", reference) for reference in _image_references(settings, name)]
    steps.append(Step(f"folder {files.root} (lists, lock, smoke test, example)", "folder", str(files.root)))
    return steps


def execute(settings: Settings, steps: list[Step]) -> None:
    from docker.errors import APIError, NotFound

    import docker

    for step in steps:
        if step.kind == "kernel":
            kernels.remove_kernel(settings.repo_root, step.target, with_venv=True, dry_run=False)
        elif step.kind == "image":
            try:
                docker.from_env().images.remove(step.target, force=False)
            except NotFound:
                pass
            except APIError as error:  # a container still uses it: say so, keep going
                print(f"kept image {step.target}: {error.explanation}", flush=True)
        elif step.kind == "folder":
            shutil.rmtree(step.target)
        print(f"removed {step.what}", flush=True)
