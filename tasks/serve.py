"""`inv serve.*` — Serving: a trained model answering locally, one prediction, a batch transform."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from invoke import task

from gs_ds_env.settings import ConfigError, load_settings

from .common import clear_errors, group, number

CODE_HELP = {
    "entry_point": "the script holding the handler (model_fn, ...), for a model trained elsewhere (default: the run's)",
    "source_dir": "the folder shipped with it (default: the entry point's folder)",
    "dependency": "a folder or file put beside the entry point, repeatable (the SDK's dependencies)",
}


def _port(value, default: int) -> int:
    port = number(default if value is None else value, "--port", int)
    if not 1024 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a usable port: choose 1024-65535")
    return port


def model_and_code(settings, run, model_data, theme, entry_point, source_dir, dependency, model_package=None):
    from gs_ds_env.serve import model_source

    code = model_source.given_code(entry_point, source_dir, dependency or [])
    return model_source.resolve(
        settings, run, model_data, theme_given=theme is not None, code=code, model_package=model_package
    )


@task(
    help={
        "run": "the run whose model to serve (a folder under runs/; default: the theme's newest completed run)",
        "model_data": "a model.tar.gz or its s3:// URI instead of a run",
        "model_package": "a registered model instead: a version, an ARN or latest-approved (inv model.list)",
        "theme": "theme (default: the run's, else THEME)",
        "py": "Python 3.N (with --model-data)",
        "port": "the endpoint's port on this machine (default SERVE_PORT)",
        "host": "the address it is published on (default 127.0.0.1: this machine only)",
        "check": "start it, write the served-model page, stop it",
        "dry_run": "print the plan, start nothing",
        **CODE_HELP,
    },
    iterable=["dependency"],
)
@clear_errors
def serve(
    c,
    run=None,
    model_data=None,
    theme=None,
    py=None,
    port=None,
    host="127.0.0.1",
    entry_point=None,
    source_dir=None,
    dependency=None,
    check=False,
    dry_run=False,
    model_package=None,
):
    """Serve a trained model from its theme image on a local endpoint (SageMaker local mode) until Ctrl-C."""
    from gs_ds_env.serve import local

    settings = load_settings(theme=theme, py=py)
    port = _port(port, settings.serve_port)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"--host {host!r} is not an IP address: e.g. 127.0.0.1 (default) or 0.0.0.0") from None
    source = model_and_code(settings, run, model_data, theme, entry_point, source_dir, dependency, model_package)
    print("\n".join(local.plan(settings, source, port, host)), flush=True)
    if host != "127.0.0.1":
        print(f"warning: --host {host}: anyone who can reach this machine can call the endpoint (no authentication)")
    if not dry_run:
        local.serve(settings, source, port, check_only=check, host=host)


@task(
    help={
        "input": "a .csv, .json, .jsonl or .npy file (the suffix is its content type)",
        "endpoint": "a SageMaker endpoint's name (default: the local endpoint of `inv serve`)",
        "port": "the local endpoint's port (default SERVE_PORT)",
        "accept": "the answer's content type (default: the input's)",
        "output": "write the predictions to this new file instead of stdout",
    }
)
@clear_errors
def predict(c, input, endpoint=None, port=None, accept=None, output=None):
    """Send a file to an endpoint and print its predictions."""
    from gs_ds_env.serve import predict as predict_mod

    settings = load_settings()
    port = _port(port, settings.serve_port)
    predict_mod.predict(settings, Path(input), endpoint, port, accept, Path(output) if output else None)


@task(
    help={
        "input": "a .csv or .jsonl file, a folder of them, or (TARGET=sagemaker) an s3:// URI",
        "output": "a new folder (local; default runs/<job>/transform-<time>/) or an s3:// URI (sagemaker)",
        "run": "the run whose model to use (default: the theme's newest completed run)",
        "model_data": "a model.tar.gz or its s3:// URI instead of a run",
        "theme": "theme (default: the run's, else THEME)",
        "py": "Python 3.N (with --model-data)",
        "header": "the CSV's first line names its columns (default: no header, unless the model's handler reads one)",
        "no_header": "every line of the CSV is a row, whatever the model's handler declares",
        "instance_count": "sagemaker: instances (files are spread across them)",
        "dry_run": "print the plan, run nothing",
        **CODE_HELP,
    },
    iterable=["dependency"],
)
@clear_errors
def transform(
    c,
    input,
    output=None,
    run=None,
    model_data=None,
    theme=None,
    py=None,
    header=False,
    no_header=False,
    entry_point=None,
    source_dir=None,
    dependency=None,
    instance_count=None,
    dry_run=False,
):
    """Batch predictions over files (the SDK's Transformer): split by line, each prediction joined to its row."""
    from gs_ds_env.serve import transform as transform_mod
    from gs_ds_env.serve import transform_input

    settings = load_settings(theme=theme, py=py)
    count = number(1 if instance_count is None else instance_count, "--instance-count", int)
    if header and no_header:
        raise ConfigError("give --header or --no-header, not both")
    transform_mod.check_target(settings, count, output)
    source = model_and_code(settings, run, model_data, theme, entry_point, source_dir, dependency)
    inputs = transform_input.read_input(input, True if header else (False if no_header else None))
    transform_mod.run(settings, source, inputs, output, count, dry_run=dry_run)


namespace = group("serve", ("local", serve), ("predict", predict), ("transform", transform), default=serve)
