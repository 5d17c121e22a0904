"""`inv theme.remove`: what `inv theme.new` made for a theme — its kernels (kernelspec and venv), its images, the
files it wrote (as its FILES_RECORD lists them, unchanged since) and its lock — and nothing else: a file of the
user's in the folder (notes, a notebook, a file edited since) is listed and kept. Never another theme's, never
while one of its kernels runs (unless --force). The plan is printed first; --dry-run stops there."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from gs_ds_env.image import THEME_LABEL, is_ours
from gs_ds_env.kernel import kernels
from gs_ds_env.settings import Settings
from gs_ds_env.theme import ThemeError
from gs_ds_env.theme.new import FILES_RECORD, sha256, templates

# What the project makes in a theme folder besides the files theme.new wrote: the lock (inv lock rewrites it), the
# kernel's build state (the kernel step removes the venv itself), caches.
MADE_BY_THE_PROJECT = ("requirements.lock", FILES_RECORD, "kernel/manifest.env", "kernel/requirements.lock.txt",
                       "kernel/.build.lock", "kernel/.kernelspec.previous")  # fmt: skip
NOT_FILES = (".venv", "__pycache__", ".ipynb_checkpoints")


@dataclass(frozen=True)
class Step:
    what: str
    kind: str  # kernel | venv | image | file
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


def _recorded(root: Path, origin: str) -> dict[str, str | None]:
    """relative path -> the sha256 theme.new wrote it with (None: a theme made before the record was kept, whose
    files are known by the template's or source theme's paths)."""
    try:
        return json.loads((root / FILES_RECORD).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    words = origin.split(",")[0].split()  # CREATED_BY="inv theme.new, template ds, <date>"
    source = None
    if len(words) >= 2 and words[-2] == "template":
        found = templates(root.parent.parent).get(words[-1])
        source = found.root if found else None
    elif len(words) >= 2 and words[-2] == "theme":
        source = root.parent / words[-1]
    if source is None or not source.is_dir():
        return {}
    return {str(p.relative_to(source)): None for p in source.rglob("*") if p.is_file() and p.name != "template.env"}


def _running_kernels(venv: Path) -> list[str]:
    """Kernels (or anything) running with this venv's Python: `pid command` for each."""
    import psutil

    running = []
    prefix = str(venv.resolve()) + "/"
    for process in psutil.process_iter(["pid", "exe", "cmdline"]):
        command = process.info.get("cmdline") or []
        exe = process.info.get("exe") or (command[0] if command else "")
        if exe.startswith(prefix) or (command and str(command[0]).startswith(prefix)):
            running.append(f"pid {process.info['pid']} ({' '.join(command)[:80]})")
    return running


def plan(settings: Settings, name: str, force: bool = False) -> tuple[list[Step], str]:
    """The steps, and one line naming what is kept (the user's files), or "" when nothing is."""
    files = settings.paths.theme(name)
    if files.root.is_symlink():
        raise ThemeError(
            f"themes/{name} is a link (to {files.root.resolve()}): refusing to follow it; remove the link itself "
            f"(rm themes/{name}) if you mean to"
        )
    if name not in [f.theme for f in settings.paths.theme_folders()]:
        raise ThemeError(f"there is no theme {name!r}: `inv theme.list` shows the themes")
    if not files.created_by:
        raise ThemeError(
            f"theme {name!r} is one of the project's own (inv theme.new did not make it): refusing; "
            f"`git rm -r themes/{name}` if you really mean to"
        )
    running = _running_kernels(files.venv) if files.venv.is_dir() else []
    if running and not force:
        raise ThemeError(
            f"a kernel of theme {name} is running ({'; '.join(running)}): shut it down first (or --force, and it "
            "breaks)"
        )
    steps = [
        Step(f"kernel {m.kernel_name}: its kernelspec and venv {m.venv}", "kernel", m.kernel_name)
        for m in kernels.manifests(settings.repo_root)
        if m.theme == name
    ]
    if files.venv.is_dir() and not steps:  # a venv no kernelspec names (a build that never registered)
        steps.append(Step(f"venv {files.venv}", "venv", str(files.venv)))
    steps += [Step(f"image tag {reference}", "image", reference) for reference in _image_references(settings, name)]
    recorded = _recorded(files.root, files.created_by)
    mine, kept = [], []
    for path in sorted(p for p in files.root.rglob("*") if (p.is_file() or p.is_symlink())):
        relative = str(path.relative_to(files.root))
        if any(part in NOT_FILES or part.startswith(".venv") for part in Path(relative).parts):
            continue  # the venv goes with its kernel; caches are nobody's work
        made = relative in MADE_BY_THE_PROJECT or (
            relative in recorded and not path.is_symlink() and recorded[relative] in (None, sha256(path))
        )
        (mine if made else kept).append(relative)
    steps += [Step(f"file themes/{name}/{relative}", "file", str(files.root / relative)) for relative in mine]
    note = ""
    if kept:
        note = (
            f"{len(kept)} file(s) in themes/{name}/ that inv theme.new did not write (or that changed since): "
            f"{', '.join(kept[:10])}{' …' if len(kept) > 10 else ''}"
        )
    return steps, note


def execute(settings: Settings, steps: list[Step]) -> None:
    from docker.errors import APIError, NotFound

    import docker

    folders = set()
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
        elif step.kind == "venv":
            shutil.rmtree(step.target, ignore_errors=True)
        elif step.kind == "file":
            path = Path(step.target)
            path.unlink(missing_ok=True)
            themes_root = settings.paths.themes_root
            folders.update(
                parent for parent in path.parents if parent.is_relative_to(themes_root) and parent != themes_root
            )
        print(f"removed {step.what}", flush=True)
    # Folders left empty go too (deepest first); one holding a file of the user's stays.
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        if folder != settings.paths.themes_root and folder.is_dir() and not folder.is_symlink():
            leftovers = [p for p in folder.rglob("*") if p.name != "__pycache__" and "__pycache__" not in p.parts]
            if not leftovers:
                shutil.rmtree(folder, ignore_errors=True)
