"""`inv model.*` — The model registry pipelines register into (SageMaker's Model Registry; locally
runs/model-registry/): list versions, approve or reject one."""

from __future__ import annotations

from invoke import task

from gs_ds_env.settings import load_settings

from .common import clear_errors, group


@task(name="list", help={"group": "one model package group (default: all of this project's)"})
@clear_errors
def model_list(c, group_=None):
    """Model versions: metrics (AUC), approval status, the execution that made each."""
    from gs_ds_env.pipeline import registry

    settings = load_settings()
    print(registry.table(registry.versions(settings, group_)), flush=True)


@task(help={"version": "a version number, an ARN, or latest-approved", "group": "its group, when several"})
@clear_errors
def approve(c, version, group_=None):
    """Approve a model version: `inv endpoint.deploy --model-package latest-approved` deploys the newest approved."""
    from gs_ds_env.pipeline import registry

    found = registry.set_status(load_settings(), version, registry.APPROVED, group_)
    print(f"{found.group} version {found.version}: {found.status}", flush=True)


@task(help={"version": "a version number or an ARN", "group": "its group, when several"})
@clear_errors
def reject(c, version, group_=None):
    """Reject a model version (it stays listed, never deployed as latest-approved)."""
    from gs_ds_env.pipeline import registry

    found = registry.set_status(load_settings(), version, registry.REJECTED, group_)
    print(f"{found.group} version {found.version}: {found.status}", flush=True)


namespace = group("model", ("list", model_list), ("approve", approve), ("reject", reject))
