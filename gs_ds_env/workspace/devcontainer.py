"""`inv devcontainer`: .devcontainer/<theme>/devcontainer.json, so VS Code (Dev Containers) or the devcontainer CLI
opens a folder inside the theme's workspace image, its interpreter the training env.

The image is named by its content tag (what the lock and Dockerfile build), so the file says exactly which
versions the folder runs with; `initializeCommand` rebuilds that image on the host if it is gone (inv clean).
The spec: https://containers.dev/implementors/json_reference/
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from gs_ds_env.image import BuiltImage
from gs_ds_env.settings import ConfigError, Settings
from gs_ds_env.workspace import HOME, USER, VENV_PYTHON

EXTENSIONS = ["ms-python.python", "ms-toolsai.jupyter"]


@dataclass(frozen=True)
class Written:
    path: Path
    changed: bool
    previous: Path | None  # where a different earlier file was kept


def config_path(settings: Settings, folder: Path) -> Path:
    return folder / ".devcontainer" / settings.theme / "devcontainer.json"


def config(settings: Settings, built: BuiltImage, inv: Path | None = None) -> dict:
    """The devcontainer.json for the theme's workspace image. Dev Containers replaces the image's command
    (overrideCommand: VS Code brings its own server); the folder is mounted in Studio's home, as `inv lab` does."""
    inv = inv or Path(sys.executable).with_name("inv")
    aws = (Path.home() / ".aws").is_dir()
    workspace = f"{HOME}/${{localWorkspaceFolderBasename}}"
    return {
        "name": f"{settings.theme} (Python {settings.py}) - gs-ds-env",
        "image": built.uri,
        "initializeCommand": [
            str(inv),
            "--search-root",
            str(settings.repo_root),
            "image.build",
            "--workspace",
            "--theme",
            settings.theme,
            "--py",
            settings.py,
        ],  # fmt: skip
        "overrideCommand": True,
        "remoteUser": USER,
        "workspaceMount": f"source=${{localWorkspaceFolder}},target={workspace},type=bind",
        "workspaceFolder": workspace,
        # AWS credentials, read-only, when this machine has them (boto3, the SDK, s3:// paths in the notebook).
        **({"mounts": [f"source=${{localEnv:HOME}}/.aws,target={HOME}/.aws,type=bind,readonly"]} if aws else {}),
        "customizations": {
            "vscode": {
                "extensions": EXTENSIONS,
                "settings": {
                    "python.defaultInterpreterPath": VENV_PYTHON,
                    "python.terminal.activateEnvironment": False,
                },
            }
        },
    }


def write(settings: Settings, folder: Path, built: BuiltImage, dry_run: bool = False) -> Written:
    """Write the file under `folder` (idempotent: the same content is not rewritten; a different file already there,
    perhaps edited by hand, is kept as devcontainer.json.previous). `folder` exists (run checked it)."""
    path = config_path(settings, folder)
    text = json.dumps(config(settings, built), indent=2) + "\n"
    old = path.read_text() if path.is_file() else None
    if old == text:
        return Written(path, False, None)
    previous = path.with_name(path.name + ".previous") if old is not None else None
    if not dry_run:
        path.parent.mkdir(parents=True, exist_ok=True)
        if previous:
            previous.write_text(old)
        path.write_text(text)
    return Written(path, True, previous)


def run(settings: Settings, folder: Path, dry_run: bool = False) -> Written:
    """The task: build the workspace image (unless `dry_run`: only its tag), write the file, say how to open it."""
    from gs_ds_env import image

    if not folder.is_dir():
        raise ConfigError(f"--folder {folder} is not a folder: give the folder VS Code opens")
    built = image.build(settings, workspace=True, dry_run=dry_run)
    written = write(settings, folder, built, dry_run=dry_run)
    if dry_run:
        print(f"would write {written.path}:\n{json.dumps(config(settings, built), indent=2)}")
        return written
    kept = f" (the earlier one kept as {written.previous.name})" if written.previous else ""
    print(
        f"devcontainer: {written.path} {'written' + kept if written.changed else 'up to date'}\n"
        f"  image {built.uri}: the kernel {settings.kernel_name}'s versions, interpreter {VENV_PYTHON}\n"
        f"  VS Code: open {folder.resolve()}, then 'Dev Containers: Reopen in Container' and pick "
        f"{config(settings, built)['name']!r}\n"
        f"  CLI: devcontainer up --workspace-folder {folder.resolve()} --config {written.path.resolve()}",
        flush=True,
    )
    return written
