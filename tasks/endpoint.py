"""`inv endpoint.*` — Endpoints on SageMaker: deploy, delete, list."""

from __future__ import annotations

from invoke import task

from .common import aws_settings, clear_errors, group
from .serve import CODE_HELP, model_and_code


@task(
    name="deploy",
    help={
        "run": "the run whose model to deploy (default: the theme's newest completed run)",
        "model_data": "a model.tar.gz or its s3:// URI instead of a run",
        "model_package": "a registered model: a version, its ARN or latest-approved (SageMaker's model registry)",
        "theme": "theme (default: the run's, else THEME)",
        "py": "Python 3.N (with --model-data)",
        "instance_type": "serverless (default), auto (the smallest real-time instance for the model) or ml.<type>",
        "dry_run": "print the plan (every AWS call), create nothing",
        **CODE_HELP,
    },
    iterable=["dependency"],
)
@clear_errors
def endpoint_deploy(
    c,
    run=None,
    model_data=None,
    theme=None,
    py=None,
    instance_type="serverless",
    entry_point=None,
    source_dir=None,
    dependency=None,
    dry_run=False,
    model_package=None,
):
    """A SageMaker endpoint for a trained model (TARGET=sagemaker): sized from its measured memory, tagged."""
    from gs_ds_env.serve import endpoint

    endpoint.check_instance_type(instance_type)  # before anything runs
    settings = aws_settings(theme=theme, py=py)
    registry_settings = settings.replace(target="sagemaker")  # the versions SageMaker's registry holds
    source = model_and_code(registry_settings, run, model_data, theme, entry_point, source_dir, dependency,
                            model_package)  # fmt: skip
    print("\n".join(endpoint.plan(settings, source, instance_type)), flush=True)
    if not dry_run:
        endpoint.deploy(settings, source, instance_type)


@task(name="delete", help={"name": "the endpoint (see inv endpoint.list)", "dry_run": "print what would be deleted"})
@clear_errors
def endpoint_delete(c, name, dry_run=False):
    """Delete one of this project's endpoints with its endpoint config and model."""
    from gs_ds_env.serve import endpoint

    settings = aws_settings(uses=())
    steps = endpoint.delete_plan(settings, name)
    print("\n".join(("would " if dry_run else "") + step for step in steps), flush=True)
    if not dry_run:
        endpoint.delete(settings, name)


@task(name="list")
@clear_errors
def endpoint_list(c):
    """This project's SageMaker endpoints: status, size and cost per hour (a forgotten one keeps costing)."""
    from gs_ds_env.serve import endpoint

    print(endpoint.table(endpoint.listing(aws_settings(uses=()))))


namespace = group("endpoint", ("deploy", endpoint_deploy), ("delete", endpoint_delete), ("list", endpoint_list))
