"""`inv workspace.*` — The theme's image as a place to work: JupyterLab here, VS Code, SageMaker Studio."""

from __future__ import annotations

from pathlib import Path

from invoke import task

from gs_ds_env.settings import load_settings

from .common import aws_settings, clear_errors, group, number


@task(
    help={
        "theme": "theme",
        "py": "Python 3.N",
        "port": "host port on 127.0.0.1 (default 8888)",
        "folder": "the folder mounted in the workspace's home (default: the current folder)",
        "check": "start it, wait until it answers, stop it (exit 1 if it never answers)",
        "force": "mount the folder even if it is /, your home itself or a system folder",
    }
)
@clear_errors
def lab(c, theme=None, py=None, port=None, folder=None, check=False, force=False):
    """JupyterLab from the theme's workspace image (its kernel: the training env) on 127.0.0.1, until Ctrl-C."""
    from gs_ds_env.workspace import lab as lab_mod

    lab_mod.run(
        load_settings(theme=theme, py=py),
        number(8888 if port is None else port, "--port", int),
        Path(folder) if folder else Path.cwd(),
        check,
        force,
    )


@task(
    help={
        "theme": "theme",
        "py": "Python 3.N",
        "folder": "the folder VS Code opens (default: the current folder); the file goes to its .devcontainer/",
        "dry_run": "print the file, build and write nothing",
    }
)
@clear_errors
def devcontainer(c, theme=None, py=None, folder=None, dry_run=False):
    """Write .devcontainer/<theme>/devcontainer.json: VS Code (Dev Containers) opens the folder in the workspace image."""
    from gs_ds_env.workspace import devcontainer as devcontainer_mod

    devcontainer_mod.run(load_settings(theme=theme, py=py), Path(folder) if folder else Path.cwd(), dry_run)


@task(
    name="studio-image",
    help={
        "theme": "theme",
        "py": "Python 3.N",
        "domain_id": "a Studio domain (d-...) to offer the image in (default: none, the command is printed)",
        "app": "jupyterlab (Studio, default) or kernel-gateway (Studio Classic)",
        "delete": "remove what this made: the domain's entry (with --domain-id), the app image config, the image",
        "dry_run": "print the plan (every AWS call), push and create nothing",
    },
)
@clear_errors
def studio_image(c, theme=None, py=None, domain_id="", app="jupyterlab", delete=False, dry_run=False):
    """The theme's workspace image as a SageMaker Studio image (TARGET=sagemaker): ECR, image, version, app config."""
    from gs_ds_env.workspace import studio

    studio.run(aws_settings(theme=theme, py=py), app, domain_id, delete, dry_run)


namespace = group("workspace", ("lab", lab), ("devcontainer", devcontainer), ("studio-image", studio_image))
