"""`inv image.*` — Images: a theme's training (or app, or workspace) image, built, pushed; an app theme's app served."""

from __future__ import annotations

from invoke import task

from gs_ds_env.settings import load_settings

from .common import aws_settings, clear_errors, group, number


@task(
    help={
        "theme": "theme",
        "py": "Python 3.N",
        "dry_run": "print what would be built",
        "workspace": "the workspace variant (JupyterLab, the theme's kernel; inv lab, Studio, dev containers)",
    }
)
@clear_errors
def build(c, theme=None, py=None, dry_run=False, workspace=False):
    """Build the theme's training image (tagged <name>:<kernel> and <name>:<kernel>-<content digest>)."""
    from gs_ds_env import image

    built = image.build(load_settings(theme=theme, py=py), dry_run=dry_run, workspace=workspace)
    print(f"image: {built.uri}" + (f" ({built.size_bytes / 1e6:.0f} MB)" if built.size_bytes else ""))


@task(help={"theme": "theme", "py": "Python 3.N", "dry_run": "print what would be built and pushed"})
@clear_errors
def push(c, theme=None, py=None, dry_run=False):
    """Build the theme image and push it to ECR (repository created if missing, scan on push)."""
    from gs_ds_env import aws, image
    from gs_ds_env.aws import iam

    settings = aws_settings(theme=theme, py=py)
    if dry_run:
        plan = image.push_plan(settings, iam.account_of(settings.sagemaker_role_arn))
        print("\n".join([*plan.commands, f"image: {plan.image_uri}"]))
        return
    pushed = image.push(settings, aws.account_id(aws.session(settings)))
    print(
        f"image: {pushed.uri}\ndigest: {pushed.digest}\npushed: {' '.join(pushed.pushed) or 'nothing (already there)'}"
    )


@task(
    help={
        "theme": "an app theme (default streamlit)",
        "py": "Python 3.N",
        "port": "host port (default 8501)",
        "check": "start it, wait for its health endpoint, stop it (exit 1 if it never answers)",
    }
)
@clear_errors
def app(c, theme="streamlit", py=None, port=None, check=False):
    """Serve an app theme's app.py from its image on 127.0.0.1:<port>, checked over HTTP."""
    from gs_ds_env.image import app as app_mod

    app_mod.run(load_settings(theme=theme, py=py), number(8501 if port is None else port, "--port", int), check)


namespace = group("image", ("build", build), ("push", push), ("app", app), default=build)
