"""`inv clean`: give disk back through the tools' own commands. Never a venv or a kernel (`inv kernel-remove`).

The plan is computed first and printed the same way by --dry-run and by the real run, which then carries it out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gs_ds_env.errors import GsError
from gs_ds_env.image import CHECKOUT_LABEL, CONTENT_LABEL, is_ours
from gs_ds_env.paths import dir_bytes
from gs_ds_env.settings import Settings


@dataclass(frozen=True)
class Step:
    what: str  # one line: what is removed
    bytes: int  # what it holds now (what the step frees at most)
    kind: str  # uv | pip | image | run | orphan
    target: str  # cache dir, image references, run folder
    image_id: str = ""  # an image step: the id its package list is kept under (parity's cache)


def _size(path: Path) -> int:
    return dir_bytes(path) if path.exists() else 0


def current_content_tags(settings: Settings) -> set[str]:
    """The content tag each theme's image has now, for PY and every kernel's Python (the build script's
    --dry-run: nothing is built)."""
    from gs_ds_env import image
    from gs_ds_env.kernel import kernels, locks

    pythons = {settings.py} | {manifest.py for manifest in kernels.manifests(settings.repo_root) if manifest.py}
    tags = set()
    for theme in locks.themes(settings.repo_root):
        for py in sorted(pythons):
            for workspace in (False, True):
                command = image.build_push_command(
                    settings.replace(theme=theme, py=py), push=False, dry_run=True, workspace=workspace
                )
                result = subprocess.run(command, capture_output=True, text=True)
                tags.update(
                    line.removeprefix("CONTENT_TAG=")
                    for line in result.stdout.splitlines()
                    if line.startswith("CONTENT_TAG=")
                )
    return tags


def plan(
    settings: Settings,
    *,
    uv: bool,
    pip: bool,
    docker: bool,
    runs: bool,
    older_than: float,
    orphans: bool = False,
    all_checkouts: bool = False,
) -> list[Step]:
    steps = []
    if orphans:
        from gs_ds_env.ops import leftovers

        for found in leftovers.find(settings):
            size = _size(found.folder) if found.folder else 0
            steps.append(Step(found.what, size, "orphan", str(found.folder or found.containers[0].id)))
    if uv:
        cache = settings.paths.uv_cache
        steps.append(Step(f"uv cache prune on {cache} (unused entries)", _size(cache), "uv", str(cache)))
    if pip:
        cache = settings.paths.pip_cache
        steps.append(Step(f"pip cache purge on {cache}", _size(cache), "pip", str(cache)))
    if docker:
        steps += _image_steps(settings, all_checkouts)
    if runs:
        cutoff = time.time() - older_than * 86400
        for folder in sorted(settings.paths.runs.glob("*")):
            if is_run(folder) and folder.stat().st_mtime < cutoff:
                steps.append(
                    Step(f"run folder {folder} (older than {older_than:g} days)", _size(folder), "run", str(folder))
                )
    return steps


RUN_MARKERS = ("run.json", "INTERRUPTED")  # what every run this project writes leaves in its folder


def is_run(folder: Path) -> bool:
    """A folder this project wrote for a run: a real folder (a link is never followed) holding its record. A
    user's own folder under runs/ (notes, an analysis) is not one."""
    return (
        not folder.is_symlink()
        and folder.is_dir()
        and any((folder / marker).is_file() and not (folder / marker).is_symlink() for marker in RUN_MARKERS)
    )


def _image_steps(settings: Settings, all_checkouts: bool = False) -> list[Step]:
    """Images this checkout built (their checkout label) that no theme builds any more; `all_checkouts`: those of
    every checkout of the project sharing this Docker daemon (each step says whose)."""
    import docker

    keep = current_content_tags(settings)
    checkout = str(settings.repo_root.resolve())
    steps = []
    for found in docker.from_env().images.list(filters={"label": CONTENT_LABEL}):
        tag = found.labels.get(CONTENT_LABEL, "")
        ours = [reference for reference in found.tags if is_ours(settings, reference)]
        # The project built it only if it carries its own content tag (<repository>:<label>): an image built FROM
        # a project image inherits the label, never that tag.
        built_here = any(reference.rsplit(":", 1)[-1] == tag for reference in ours)
        whose = found.labels.get(CHECKOUT_LABEL, "")
        if tag in keep or not built_here or (whose != checkout and not all_checkouts):
            continue
        others = len(found.tags) - len(ours)
        size = 0 if others else int(found.attrs.get("Size", 0))
        note = f"; {others} other tag(s) keep the image" if others else ""
        owner = "this checkout" if whose == checkout else (f"checkout {whose}" if whose else "an unknown checkout")
        steps.append(
            Step(
                f"image {', '.join(ours)} ({found.short_id}, content tag {tag}, built by {owner}: no theme builds it "
                f"now{note})",
                size,
                "image",
                " ".join(ours),
                image_id=found.id,
            )
        )
    return sorted(steps, key=lambda step: step.target)  # the same order in the plan and in the real run


def describe(steps: list[Step], dry_run: bool) -> list[str]:
    verb = "would remove" if dry_run else "remove"
    lines = [f"{verb}: {step.what} [{step.bytes / 1e6:.0f} MB]" for step in steps]
    total = sum(step.bytes for step in steps)
    lines.append(f"{'would free' if dry_run else 'frees'} up to {total / 1e6:.0f} MB" if steps else "nothing to clean")
    return lines


def _exists(image_id: str) -> bool:
    from docker.errors import ImageNotFound

    import docker

    try:
        docker.from_env().images.get(image_id)
    except ImageNotFound:
        return False
    return True


class CleanError(GsError):
    """The plan no longer holds (something changed since it was printed): nothing was removed."""


def execute(settings: Settings, steps: list[Step]) -> int:
    """Carry out the plan exactly as printed; returns the bytes really freed. Every run folder is checked again
    first: if one is no longer a run (replaced by a link, its record gone), nothing at all is removed."""
    from docker.errors import APIError

    import docker

    changed = [step.target for step in steps if step.kind == "run" and not is_run(Path(step.target))]
    if changed:
        raise CleanError(
            f"{', '.join(changed)} changed since the plan was made (no longer a run folder): nothing was removed; "
            "run inv clean again"
        )
    freed = 0
    orphans = [step.target for step in steps if step.kind == "orphan"]
    if orphans:
        from gs_ds_env.ops import leftovers

        found = [item for item in leftovers.find(settings) if str(item.folder or item.containers[0].id) in orphans]
        leftovers.remove(found)
        freed += sum(step.bytes for step in steps if step.kind == "orphan")
    for step in steps:
        if step.kind == "uv":
            from gs_ds_env.kernel import locks

            uv = locks.uv_binary(settings.repo_root)
            subprocess.run([uv, "cache", "prune", "--cache-dir", step.target], check=True)
            freed += step.bytes - _size(Path(step.target))
        elif step.kind == "pip":
            python = shutil.which("python3")  # the project's own venv has no pip; the machine's python3 does
            if python:
                subprocess.run(
                    [python, "-m", "pip", "cache", "purge"],
                    check=False,
                    env={**os.environ, "PIP_CACHE_DIR": step.target},
                )
            freed += step.bytes - _size(Path(step.target))
        elif step.kind == "image":
            try:  # tag by tag: an image some container still uses is refused by Docker and kept
                for reference in step.target.split():
                    docker.from_env().images.remove(reference, force=False)
                freed += step.bytes
                if step.image_id and not _exists(step.image_id):
                    settings.paths.image_packages(step.image_id).unlink(missing_ok=True)
            except APIError as error:
                print(f"kept image {step.target}: {error.explanation}", flush=True)
        elif step.kind == "run":
            shutil.rmtree(step.target)
            freed += step.bytes
    return freed
