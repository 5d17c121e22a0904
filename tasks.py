"""Invoke tasks: parse arguments, call gs_ds_env. All logic lives in the package; settings come from .env."""

from __future__ import annotations

import functools
import subprocess

from invoke import Collection, Exit, task

from gs_ds_env import data as data_mod
from gs_ds_env import kernels as kernels_mod
from gs_ds_env.settings import ConfigError, load_settings


def clear_errors(func):
    """Bad input becomes one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ConfigError, data_mod.DataError) as error:
            raise Exit(f"error: {error}", code=2) from None
        except subprocess.CalledProcessError as error:
            raise Exit(f"error: {error.cmd[0]} failed with exit status {error.returncode} (see its output above)",
                       code=error.returncode or 1) from None

    return wrapper


def require_local(settings) -> None:
    if settings.target != "local":
        raise Exit("error: TARGET=sagemaker (ECR push, S3 upload, SageMaker training job) is not available in this "
                   "version yet; run with TARGET=local", code=2)


# ---- kernels ---------------------------------------------------------------------------------------------
@task(help={"theme": "theme under themes/", "py": "Python 3.N", "requirements": "requirements file",
            "torch": "uv --torch-backend (auto, cpu, cu126, none)", "force": "rebuild even if up to date"})
@clear_errors
def kernel(c, theme=None, py=None, requirements=None, torch=None, force=False):
    """Create or update the theme's venv and Jupyter kernel <theme>_<pyver>."""
    kernels_mod.create_kernel(load_settings(theme=theme, py=py, torch_backend=torch), requirements, force)


@task
@clear_errors
def kernels(c):
    """Table of theme kernels: name, theme, Python, venv size, status."""
    rows = kernels_mod.list_kernels()
    print(kernels_mod.format_table(rows) if rows else "no theme kernels yet: make kernel THEME=tabular PY=3.12")


@task(name="kernel-remove", help={"name": "kernel name, e.g. tabular_312", "venv": "also delete the venv",
                                  "dry_run": "print what would be removed"})
@clear_errors
def kernel_remove(c, name, venv=False, dry_run=False):
    """Remove a kernelspec (and its venv with --venv)."""
    for line in kernels_mod.remove_kernel(load_settings().repo_root, name, venv, dry_run):
        print(line)


@task(name="kernels-restore")
@clear_errors
def kernels_restore(c):
    """Re-register every kernel from its manifest (after a SageMaker notebook restart)."""
    kernels_mod.restore_kernels(load_settings())


# ---- image, data, training ---------------------------------------------------------------------------------
@task(help={"theme": "theme", "py": "Python 3.N", "dry_run": "print what would be built"})
@clear_errors
def build(c, theme=None, py=None, dry_run=False):
    """Build the theme's training image (tagged <name>:<kernel> and <name>:<kernel>-<content digest>)."""
    from gs_ds_env import image

    built = image.build(load_settings(theme=theme, py=py), dry_run=dry_run)
    print(f"image: {built.uri}" + (f" ({built.size_bytes / 1e6:.0f} MB)" if built.size_bytes else ""))


@task(help={"source": "URL or local path of the Titanic CSV (default: TITANIC_CSV, else TITANIC_URL)",
            "target": "local or sagemaker", "dry_run": "print what would be uploaded"})
@clear_errors
def data(c, source=None, target=None, dry_run=False):
    """Fetch and verify the Titanic CSV, split it train/validation, stage it (and upload it for sagemaker)."""
    settings = load_settings(target=target)
    require_local(settings)
    staged = data_mod.split_and_stage(settings, source)
    for channel, folder in staged.channels.items():
        print(f"{channel}: {folder} ({staged.rows[channel]} rows)")


@task(help={"target": "local or sagemaker", "dry_run": "print the training job request, start nothing"})
@clear_errors
def train(c, target=None, dry_run=False):
    """Run the training job on the image built by `inv build` and the data staged by `inv data`."""
    from gs_ds_env import deploy as deploy_mod

    settings = load_settings(target=target)
    require_local(settings)
    if dry_run:
        print(deploy_mod.local_plan(settings))
        return
    deploy_mod.deploy_local(settings, skip_kernel=True)


@task(help={"target": "local or sagemaker", "theme": "theme", "py": "Python 3.N",
            "source": "Titanic CSV URL or path", "dry_run": "print the plan (every command and AWS call), do nothing"})
@clear_errors
def deploy(c, target=None, theme=None, py=None, source=None, dry_run=False):
    """kernel -> build -> (push) -> data -> training job -> runs/<job>/report.md."""
    from gs_ds_env import deploy as deploy_mod

    settings = load_settings(target=target, theme=theme, py=py)
    require_local(settings)
    if dry_run:
        print(deploy_mod.local_plan(settings))
        return
    deploy_mod.deploy_local(settings, source=source)


ns = Collection(kernel, kernels, kernel_remove, kernels_restore, build, data, train, deploy)
