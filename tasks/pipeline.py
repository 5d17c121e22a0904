"""`inv pipeline.*` — Pipelines (pipelines/<name>.py): run one here or on SageMaker Pipelines, schedule it, list
them, delete one."""

from __future__ import annotations

from invoke import task

from gs_ds_env.settings import ConfigError, load_settings

from .common import aws_settings, clear_errors, group


@task(
    help={
        "name": "the pipeline: pipelines/<name>.py (e.g. titanic)",
        "param": "Name=value for one of its parameters, repeatable (e.g. --param AucThreshold=0.85)",
        "target": "local (real containers here) or sagemaker (SageMaker Pipelines)",
        "theme": "theme whose image runs every step (the pipeline may require one)",
        "py": "Python 3.N",
        "dry_run": "print the plan (the steps as a graph, the parameters), run and send nothing",
        "detach": "sagemaker: start the execution and return",
    },
    iterable=["param"],
)
@clear_errors
def run(c, name, param=None, target=None, theme=None, py=None, dry_run=False, detach=False):
    """Run a pipeline: every step in the theme image, one record with its graph in runs/<pipeline>-<time>/."""
    from gs_ds_env.job.report import invoked_command
    from gs_ds_env.pipeline import run as run_mod
    from gs_ds_env.pipeline.targets import check_detach

    settings = load_settings(target=target, theme=theme, py=py)  # TARGET=sagemaker: the AWS keys checked too
    check_detach(settings, detach)
    if dry_run:
        print(run_mod.plan(settings, name, param or []), flush=True)
        return
    run_mod.run(settings, name, param or [], invoked_command(), detach=detach)


@task(
    help={
        "name": "the pipeline (pipelines/<name>.py), already run once on SageMaker",
        "cron": "an EventBridge cron expression, six fields, UTC: '0 6 * * ? *' is 06:00 every day",
        "off": "remove the schedule",
    }
)
@clear_errors
def schedule(c, name, cron=None, off=False):
    """Run a SageMaker pipeline on a schedule (EventBridge Scheduler, SCHEDULER_ROLE_ARN), or stop (--off)."""
    from gs_ds_env.pipeline import definition, remote

    if bool(cron) == bool(off):
        raise ConfigError("give --cron '<expression>' or --off")
    if cron:
        remote.cron_fields(cron)
    settings = aws_settings(uses=())
    if cron and not settings.scheduler_role_arn:
        raise ConfigError(
            "SCHEDULER_ROLE_ARN is missing: the schedule starts the pipeline as this role (trusting "
            "scheduler.amazonaws.com, allowed sagemaker:StartPipelineExecution); `inv iam-policy` writes both"
        )
    definition.load(settings, name)
    print(remote.schedule(settings, definition.pipeline_name(settings, name), cron, off), flush=True)


@task(name="list")
@clear_errors
def pipeline_list(c):
    """This project's pipelines on SageMaker: last execution, schedule (TARGET=local: the local runs' records)."""
    from gs_ds_env.pipeline import targets

    print(targets.for_settings(load_settings()).listing(), flush=True)


@task(help={"name": "the pipeline (pipelines/<name>.py)", "dry_run": "print what would be deleted"})
@clear_errors
def delete(c, name, dry_run=False):
    """Delete a pipeline on SageMaker and its schedule (its executions' records and outputs stay)."""
    from gs_ds_env.pipeline import definition, remote

    settings = aws_settings(uses=())
    full = definition.pipeline_name(settings, name)
    steps = remote.delete_plan(settings, full)
    print("\n".join(("would " if dry_run else "") + step for step in steps), flush=True)
    if not dry_run:
        remote.delete(settings, full)


namespace = group("pipeline", ("run", run), ("schedule", schedule), ("list", pipeline_list), ("delete", delete))
