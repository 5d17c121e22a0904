"""`inv serve.*` — Serving: a trained model answering locally, one prediction, a batch transform."""

from __future__ import annotations

from pathlib import Path

from invoke import task

from gs_ds_env.settings import ConfigError, load_settings, validate_for_aws

from .common import clear_errors, group, number


@task(
    help={
        "run": "the run whose model to serve (a folder under runs/; default: the theme's newest completed run)",
        "model_data": "a model.tar.gz or its s3:// URI instead of a run",
        "theme": "theme (default: the run's, else THEME)",
        "py": "Python 3.N (with --model-data)",
        "port": "the endpoint's port on this machine (default SERVE_PORT)",
        "check": "start it, write the served-model page, stop it",
        "dry_run": "print the plan, start nothing",
    }
)
@clear_errors
def serve(c, run=None, model_data=None, theme=None, py=None, port=None, check=False, dry_run=False):
    """Serve a trained model from its theme image on a local endpoint (SageMaker local mode) until Ctrl-C."""
    from gs_ds_env.serving import local, model_source

    settings = load_settings(theme=theme, py=py)
    port = number(settings.serve_port if port is None else port, "--port", int)
    if not 1024 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a usable port: choose 1024-65535")
    source = model_source.resolve(settings, run, model_data, theme_given=theme is not None)
    print("\n".join(local.plan(settings, source, port)), flush=True)
    if not dry_run:
        local.serve(settings, source, port, check_only=check)


@task(
    help={
        "input": "a .csv, .json or .jsonl file (the suffix is its content type)",
        "endpoint": "a SageMaker endpoint's name (default: the local endpoint of `inv serve`)",
        "port": "the local endpoint's port (default SERVE_PORT)",
        "accept": "the answer's content type (default: the input's)",
        "output": "write the predictions to this new file instead of stdout",
    }
)
@clear_errors
def predict(c, input, endpoint=None, port=None, accept=None, output=None):
    """Send a file to an endpoint and print its predictions."""
    from gs_ds_env.serving import predict as predict_mod

    settings = load_settings()
    port = number(settings.serve_port if port is None else port, "--port", int)
    predict_mod.predict(settings, Path(input), endpoint, port, accept, Path(output) if output else None)


@task(
    help={
        "input": "a .csv or .jsonl file, a folder of them, or (TARGET=sagemaker) an s3:// URI",
        "output": "a new folder (local; default runs/<job>/transform-<time>/) or an s3:// URI (sagemaker)",
        "run": "the run whose model to use (default: the theme's newest completed run)",
        "model_data": "a model.tar.gz or its s3:// URI instead of a run",
        "theme": "theme (default: the run's, else THEME)",
        "py": "Python 3.N (with --model-data)",
        "instance_count": "sagemaker: instances (files are spread across them)",
        "dry_run": "print the plan, run nothing",
    }
)
@clear_errors
def transform(
    c, input, output=None, run=None, model_data=None, theme=None, py=None, instance_count=None, dry_run=False
):
    """Batch predictions over files (the SDK's Transformer): split by line, each prediction joined to its row."""
    from gs_ds_env.serving import model_source
    from gs_ds_env.serving import transform as transform_mod

    settings = load_settings(theme=theme, py=py)
    count = number(1 if instance_count is None else instance_count, "--instance-count", int)
    if not 1 <= count <= 100 or (count > 1 and settings.target == "local"):
        raise ConfigError(f"--instance-count {count}: 1-100, and 1 with TARGET=local (one machine)")
    if settings.target == "sagemaker":
        validate_for_aws(settings)
    source = model_source.resolve(settings, run, model_data, theme_given=theme is not None)
    inputs = transform_mod.read_input(input)
    if settings.target == "local":
        destination = Path(output) if output else transform_mod.default_output(settings, source)
    else:
        destination = output
        if destination and not destination.startswith("s3://"):
            raise ConfigError(f"--output {destination}: TARGET=sagemaker writes to S3, give an s3:// URI (or none)")
    print(
        "\n".join(
            transform_mod.plan(
                settings, source, inputs, str(destination or "s3://<bucket>/<prefix>/transform-output/<job>/"), count
            )
        ),
        flush=True,
    )
    if dry_run:
        return
    if settings.target == "local":
        transform_mod.run_local(settings, source, inputs, destination)
    else:
        transform_mod.run_sagemaker(settings, source, inputs, destination, count)


namespace = group("serve", ("local", serve), ("predict", predict), ("transform", transform), default=serve)
