"""`inv job.*` — Jobs: training and processing in the theme image on either target, a detached job attached, the
notebook run."""

from __future__ import annotations

from pathlib import Path

from invoke import Exit, task

from gs_ds_env.settings import ConfigError, load_settings

from .common import aws_settings, clear_errors, group, number, sdk_in_background


@task(
    help={
        "target": "local or sagemaker",
        "theme": "theme (its image runs the job)",
        "py": "Python 3.N",
        "entry_point": "your script (script mode, run by the SageMaker training toolkit in the theme image)",
        "source_dir": "the folder shipped with it (default: the entry point's folder)",
        "dependency": "a folder or file copied beside the entry point, repeatable (the SDK's dependencies)",
        "channel": "name=folder, name=file or (sagemaker) name=s3://…, repeatable (script mode)",
        "hyperparameter": "key=value passed to the script as --key value, repeatable; nothing else is passed",
        "metric_definition": "name=regex with one (group) for the value, repeatable (the SDK's metric_definitions)",
        "job_name": "training job name (default: BASE_JOB_NAME-<theme>-<script>-<timestamp>)",
        "dry_run": "print the plan, start nothing",
        "allow_drift": "train even if the kernel and the image differ (the report records it)",
        "skip_preflight": "sagemaker: skip the checks run before anything is pushed or paid for",
        "detach": "sagemaker: start the job and return; `inv job.attach NAME` follows it and collects its results",
    },
    iterable=["channel", "hyperparameter", "metric_definition", "dependency"],
)
@clear_errors
def train(
    c,
    target=None,
    theme=None,
    py=None,
    entry_point=None,
    source_dir=None,
    dependency=None,
    channel=None,
    hyperparameter=None,
    metric_definition=None,
    job_name=None,
    dry_run=False,
    allow_drift=False,
    skip_preflight=False,
    detach=False,
):
    """Train in the theme image: your --entry-point (script mode), or the Titanic program on the staged data."""
    sdk_in_background(dry_run)
    from gs_ds_env.job import deploy as deploy_mod
    from gs_ds_env.job import metrics, script_mode, targets

    # The process is the run: its start-up is the run's first step.
    timer = deploy_mod.Timer(count_start_up=True)
    if entry_point is not None and not entry_point.strip():
        raise ConfigError("--entry-point is empty: give the script to run, e.g. --entry-point train.py")
    settings = load_settings(target=target, theme=theme, py=py, entry_point=entry_point, source_dir=source_dir)
    if not settings.entry_point:
        if channel or hyperparameter or metric_definition or dependency:
            raise ConfigError(
                "--channel, --hyperparameter, --metric-definition and --dependency go with --entry-point (script mode)"
            )
        deploy_mod.run(
            settings,
            skip_kernel=True,
            job_name=job_name,
            dry_run=dry_run,
            allow_drift=allow_drift,
            skip_preflight=skip_preflight,
            detach=detach,
            timer=timer,
        )
        return
    channels = script_mode.parse_channels(channel or [], targets.TARGETS[settings.target].reads_s3)
    hyperparameters = script_mode.parse_hyperparameters(hyperparameter or [])
    definitions = metrics.parse_definitions(metric_definition or [])
    deploy_mod.run_script(
        settings,
        channels=channels or None,
        hyperparameters=hyperparameters,
        metric_definitions=definitions,
        dependencies=dependency or [],
        job_name=job_name,
        allow_drift=allow_drift,
        skip_preflight=skip_preflight,
        detach=detach,
        dry_run=dry_run,
        timer=timer,
    )


@task(
    help={
        "target": "local or sagemaker",
        "theme": "theme",
        "py": "Python 3.N",
        "source": "Titanic CSV URL or path",
        "job_name": "training job name (default: BASE_JOB_NAME + timestamp)",
        "dry_run": "print the plan (every command and AWS call), do nothing",
        "allow_drift": "train even if the kernel and the image differ (the report records it)",
        "skip_preflight": "sagemaker: skip the checks run before anything is pushed or paid for",
        "detach": "sagemaker: start the job and return; `inv job.attach NAME` follows it and collects its results",
    }
)
@clear_errors
def deploy(
    c,
    target=None,
    theme=None,
    py=None,
    source=None,
    job_name=None,
    dry_run=False,
    allow_drift=False,
    skip_preflight=False,
    detach=False,
):
    """kernel -> build -> parity -> (instance, push) -> data -> training job -> runs/<job>/report.md."""
    sdk_in_background(dry_run)
    from gs_ds_env.job import deploy as deploy_mod

    # The process is the run: its start-up is the run's first step.
    timer = deploy_mod.Timer(count_start_up=True)
    settings = load_settings(target=target, theme=theme, py=py)
    deploy_mod.run(
        settings,
        source=source,
        job_name=job_name,
        dry_run=dry_run,
        allow_drift=allow_drift,
        skip_preflight=skip_preflight,
        detach=detach,
        timer=timer,
    )


@task(
    help={
        "target": "local or sagemaker",
        "theme": "theme (its image runs the job)",
        "py": "Python 3.N",
        "code": "the processing script (run as `python3 /opt/ml/processing/input/code/<it>`)",
        "source_dir": "the folder shipped with it (default: the script's folder)",
        "input": "name=folder, name=file or (sagemaker) name=s3://…, repeatable: mounted at /opt/ml/processing/input/<name>",
        "shard": "sagemaker: spread each input's objects over the instances (ShardedByS3Key)",
        "output": "name[=s3://…], repeatable: collected from /opt/ml/processing/output/<name>",
        "argument": "one argument for the script, repeatable, in order (--argument=--since --argument=2026-01-01)",
        "instance_count": "sagemaker: instances (default INSTANCE_COUNT)",
        "instance_type": "sagemaker: auto (the cheapest with a processing quota) or ml.<type> (default INSTANCE_TYPE)",
        "job_name": "processing job name (default: BASE_JOB_NAME-<theme>-<script>-<timestamp>)",
        "dry_run": "print the plan, start nothing",
        "allow_drift": "run even if the kernel and the image differ (the report records it)",
        "skip_preflight": "sagemaker: skip the checks run before anything is pushed or paid for",
        "detach": "sagemaker: start the job and return; `inv job.attach NAME` follows it and writes its record",
    },
    iterable=["input", "output", "argument"],
)
@clear_errors
def process(
    c,
    code=None,
    target=None,
    theme=None,
    py=None,
    source_dir=None,
    input=None,
    shard=False,
    output=None,
    argument=None,
    instance_count=None,
    instance_type=None,
    job_name=None,
    dry_run=False,
    allow_drift=False,
    skip_preflight=False,
    detach=False,
):
    """Run a data-preparation script in the theme image as SageMaker Processing runs it (local mode or SageMaker)."""
    sdk_in_background(dry_run)
    from gs_ds_env.job import deploy as deploy_mod
    from gs_ds_env.job import processing, targets

    timer = deploy_mod.Timer(count_start_up=True)
    if not (code or "").strip():
        raise ConfigError("--code is missing: give the processing script, e.g. --code prepare.py")
    count = None if instance_count is None else number(instance_count, "--instance-count", int)
    settings = load_settings(
        target=target, theme=theme, py=py, entry_point=code, source_dir=source_dir, instance_count=count,
        instance_type=instance_type,
    )  # fmt: skip
    targets.check_instance_count(settings)
    reads_s3 = targets.TARGETS[settings.target].reads_s3
    deploy_mod.run_process(
        settings,
        inputs=processing.parse_inputs(input or [], shard, reads_s3),
        outputs=processing.parse_outputs(output or [], reads_s3),
        arguments=processing.parse_arguments(argument or []),
        job_name=job_name,
        allow_drift=allow_drift,
        skip_preflight=skip_preflight,
        detach=detach,
        dry_run=dry_run,
        timer=timer,
    )


@task(help={"name": "the job's name (runs/<name>/ holds its record)"})
@clear_errors
def attach(c, name):
    """Follow a SageMaker job started with --detach until it ends (Ctrl-C stops it), then collect its results."""
    from gs_ds_env.job import deploy as deploy_mod

    deploy_mod.attach(aws_settings(uses=()), name)


@task(
    help={
        "path": "the notebook (default notebooks/titanic-sagemaker.ipynb)",
        "theme": "its theme (default: from the notebook's kernel name)",
        "py": "Python 3.N of the kernel",
        "timeout": "seconds a cell may run (default 1800)",
    }
)
@clear_errors
def notebook(c, path="notebooks/titanic-sagemaker.ipynb", theme=None, py=None, timeout=None):
    """Run a notebook top to bottom on its theme kernel with nbclient (as CI does); the executed copy goes to runs/."""
    from gs_ds_env.job import notebook as notebook_mod

    notebook_path = Path(path).expanduser().resolve()
    if not notebook_path.is_file():
        raise ConfigError(f"notebook {path} does not exist: e.g. notebooks/titanic-sagemaker.ipynb")
    settings = load_settings(theme=theme or notebook_mod.theme_of(notebook_path), py=py)
    try:
        notebook_mod.execute(settings, notebook_path, number(1800 if timeout is None else timeout, "--timeout", int))
    except notebook_mod.NotebookFailed as error:
        raise Exit(f"error: {error}", code=1) from None


namespace = group(
    "job",
    ("train", train),
    ("deploy", deploy),
    ("process", process),
    ("attach", attach),
    ("notebook", notebook),
    default=deploy,
)
