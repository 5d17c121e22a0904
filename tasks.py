"""Invoke tasks: parse arguments, call gs_ds_env. All logic lives in the package; settings come from .env."""

from __future__ import annotations

import functools
import math
import subprocess
from pathlib import Path

from botocore.exceptions import BotoCoreError
from botocore.parsers import ResponseParserError
from invoke import Collection, Exit, task

from gs_ds_env import data as data_mod
from gs_ds_env import kernels as kernels_mod
from gs_ds_env import locks as locks_mod
from gs_ds_env.aws import AwsError, explain
from gs_ds_env.clean import CleanError
from gs_ds_env.interrupts import interruptible
from gs_ds_env.parity import ParityError
from gs_ds_env.preflight import PreflightFailed
from gs_ds_env.serving import ServeError
from gs_ds_env.settings import ConfigError, load_settings, validate_for_aws
from gs_ds_env.theme import ThemeError
from gs_ds_env.training_job import TrainingFailed


def clear_errors(func):
    """Bad input becomes one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            with interruptible():  # SIGTERM and SIGHUP end a task as Ctrl-C does
                return func(*args, **kwargs)
        except (ConfigError, data_mod.DataError) as error:
            raise Exit(f"error: {error}", code=2) from None
        except (
            AwsError,
            ParityError,
            PreflightFailed,
            locks_mod.LockError,
            kernels_mod.KernelError,
            CleanError,
            ServeError,
            ThemeError,
        ) as error:
            raise Exit(f"error: {error}", code=1) from None
        except TrainingFailed as error:
            if error.details:
                print("\n".join(error.details), flush=True)
            raise Exit(f"error: {error}", code=1) from None
        except (BotoCoreError, ResponseParserError) as error:  # outside the package's own handling
            raise Exit(f"error: {explain(error, 'an AWS call')}", code=1) from None
        except KeyboardInterrupt as interrupted:
            status = getattr(interrupted, "status", "interrupted (Ctrl-C)")
            raise Exit(
                f"error: {status}; what finished is kept, a half-done run says INTERRUPTED",
                code=getattr(interrupted, "exit_code", 130),
            ) from None
        except subprocess.CalledProcessError as error:
            raise Exit(
                f"error: {error.cmd[0]} failed with exit status {error.returncode} (see its output above)",
                code=error.returncode or 1,
            ) from None

    return wrapper


def number(value, option: str, kind: type = float):
    """An option's value as a finite number, or one line saying what to give."""
    try:
        parsed = kind(value)
        if not math.isfinite(parsed):
            raise ValueError(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{option} {value!r} is not a{'' if kind is float else 'n'} {'number' if kind is float else 'integer'}: e.g. {option} 30"
        ) from None
    return parsed


def aws_settings(**overrides):
    """Settings for a task that always talks to AWS, whatever TARGET says: the AWS keys are checked first."""
    settings = load_settings(**overrides)
    validate_for_aws(settings)
    return settings


# ---- kernels ---------------------------------------------------------------------------------------------
@task(
    help={
        "theme": "theme under themes/",
        "py": "Python 3.N",
        "requirements": "requirements file",
        "torch": "uv --torch-backend (auto, cpu, cu126, none)",
        "force": "rebuild even if up to date",
    }
)
@clear_errors
def kernel(c, theme=None, py=None, requirements=None, torch=None, force=False):
    """Create or update the theme's venv and Jupyter kernel <theme>_<pyver>."""
    kernels_mod.create_kernel(load_settings(theme=theme, py=py, torch_backend=torch), requirements, force)


@task(
    help={
        "smoke": "run each theme's smoke test in its venv now (default: the result recorded at creation)",
        "theme": "only this theme's kernel",
    }
)
@clear_errors
def kernels(c, smoke=False, theme=None):
    """Table of theme kernels: name, theme, Python, venv size, status, smoke test."""
    settings = load_settings(theme=theme)
    rows = kernels_mod.list_kernels(settings.repo_root, smoke_now=smoke, theme=theme)
    print(kernels_mod.format_table(rows) if rows else "no theme kernels yet: make kernel THEME=tabular PY=3.12")
    if any(row.smoke.startswith("FAILED") for row in rows):
        raise Exit("error: a smoke test failed: rebuild that kernel (make kernel THEME=... FORCE=1)", code=1)


@task(
    help={
        "theme": "one theme (default: every theme)",
        "upgrade": "move every pin to the newest allowed version",
        "check": "only report whether re-locking would change a lock (exit 1 if so)",
        "base": "also refresh the base images' digests in docker/pins.env (needs Docker Hub)",
    }
)
@clear_errors
def lock(c, theme=None, upgrade=False, check=False, base=False):
    """(Re)lock themes/<theme>/requirements.lock with uv pip compile (universal, Python >= 3.11)."""
    settings = load_settings()
    repo_root, cache_dir = settings.repo_root, settings.paths.uv_cache
    chosen = [theme] if theme else locks_mod.themes(repo_root)
    if check:
        stale = {name: locks_mod.stale(repo_root, name, cache_dir) for name in chosen}
        for name, lines in stale.items():
            print(f"{name}: {'up to date' if not lines else f'{len(lines)} line(s) would change'}")
            print("\n".join(f"  {line}" for line in lines[:20]))
        if any(stale.values()):
            raise Exit("error: a lock is stale: run inv lock and commit the result", code=1)
        return
    for name in chosen:
        print(f"locked {locks_mod.lock(repo_root, name, upgrade=upgrade, cache_dir=cache_dir).relative_to(repo_root)}")
    if base:
        for line in locks_mod.refresh_base_images(repo_root, ["3.11", "3.12", "3.13"]):
            print(f"pinned {line}")


@task(help={"theme": "theme", "py": "Python 3.N"})
@clear_errors
def parity(c, theme=None, py=None):
    """Every package in both the kernel venv and the theme image, with both versions; exit 1 on any difference."""
    from gs_ds_env import image
    from gs_ds_env import parity as parity_mod

    settings = load_settings(theme=theme, py=py)
    built = image.build(settings)
    result = parity_mod.check(settings.kernel_name, settings.theme_files.venv, built.local_ref)
    print(result.table())
    if not result.ok:
        raise Exit(f"error: {result.summary()}", code=1)


@task(
    name="kernel-remove",
    help={
        "name": "kernel name, e.g. tabular_312",
        "venv": "also delete the venv",
        "dry_run": "print what would be removed",
    },
)
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


# ---- themes -------------------------------------------------------------------------------------------------
@task(
    name="new",
    help={
        "name": "the new theme's name (lowercase letters, digits, '-'; at most 32 characters)",
        "template": "ds (default), de, mlops or app: a folder of themes/_templates/",
        "from": "copy this theme instead of a template",
        "python": "its default Python 3.N (default: PY)",
        "add": "more packages for its image and kernel, e.g. 'polars>=1.0 duckdb'",
        "description": "one line saying what it is for",
    },
)
@clear_errors
def theme_new(c, name, template=None, from_=None, python=None, add=None, description=None):
    """Create themes/NAME from a template or a theme, compile its lock, print the next commands."""
    from gs_ds_env.theme import new

    created = new.create(load_settings(), name, template, from_, python, add, description)
    print(f"created themes/{created.name}/ ({created.origin}, {created.kind} theme, Python {created.python}); next:")
    print("\n".join(f"  {step}" for step in created.next_steps()))


@task(name="check", help={"name": "the theme", "py": "Python 3.N (default: PY)"})
@clear_errors
def theme_check(c, name, py=None):
    """One verdict: lock up to date, kernel and image build with their smoke test, parity, the example as a job."""
    from gs_ds_env.theme import check

    log = check.check(load_settings(theme=name, py=py))
    print(f"theme {name}: every check passed (log: {log})")


@task(name="list")
@clear_errors
def theme_list(c):
    """Every theme: kind, default Python, lock age, kernels and images built here, description."""
    from gs_ds_env.theme import catalog

    print(catalog.format_table(catalog.rows(load_settings())))


@task(name="remove", help={"name": "a theme made by inv theme.new", "dry_run": "print what would be removed"})
@clear_errors
def theme_remove(c, name, dry_run=False):
    """Remove a theme made by `inv theme.new`: its kernels and venv, its images, its folder."""
    from gs_ds_env.theme import remove

    settings = load_settings()
    steps = remove.plan(settings, name)
    print("\n".join(f"{'would remove' if dry_run else 'remove'}: {step.what}" for step in steps), flush=True)
    if not dry_run:
        remove.execute(settings, steps)


# ---- image, data, training ---------------------------------------------------------------------------------
@task(help={"theme": "theme", "py": "Python 3.N", "dry_run": "print what would be built"})
@clear_errors
def build(c, theme=None, py=None, dry_run=False):
    """Build the theme's training image (tagged <name>:<kernel> and <name>:<kernel>-<content digest>)."""
    from gs_ds_env import image

    built = image.build(load_settings(theme=theme, py=py), dry_run=dry_run)
    print(f"image: {built.uri}" + (f" ({built.size_bytes / 1e6:.0f} MB)" if built.size_bytes else ""))


@task(help={"theme": "theme", "py": "Python 3.N", "dry_run": "print what would be built and pushed"})
@clear_errors
def push(c, theme=None, py=None, dry_run=False):
    """Build the theme image and push it to ECR (repository created if missing, scan on push)."""
    from gs_ds_env import aws, iam, image

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
        "source": "URL or local path of the Titanic CSV (default: TITANIC_CSV, else TITANIC_URL)",
        "target": "local or sagemaker",
        "dry_run": "print what would be uploaded",
    }
)
@clear_errors
def data(c, source=None, target=None, dry_run=False):
    """Fetch and verify the Titanic CSV, split it train/validation, stage it (and upload it for sagemaker)."""
    from gs_ds_env import aws, s3_data

    settings = load_settings(target=target)
    if dry_run:
        print(s3_data.plan(settings, source))
        return
    staged = data_mod.split_and_stage(settings, source)
    for channel, folder in staged.channels.items():
        print(f"{channel}: {folder} ({staged.rows[channel]} rows)")
    if settings.target == "sagemaker":
        uploaded = s3_data.upload(settings, aws.client(aws.session(settings), "s3"), staged)
        for entry in uploaded.objects:
            print(f"{entry['uri']} sha256 {entry['sha256']} ({'uploaded' if entry['sent'] else 'already there'})")


@task(
    help={
        "target": "local or sagemaker",
        "theme": "theme (its image runs the job)",
        "py": "Python 3.N",
        "entry_point": "your script (script mode, run by the SageMaker training toolkit in the theme image)",
        "source_dir": "the folder shipped with it (default: the entry point's folder)",
        "channel": "name=folder, name=file or (sagemaker) name=s3://…, repeatable (script mode)",
        "hyperparameter": "key=value passed to the script as --key value, repeatable; nothing else is passed",
        "metric_definition": "name=regex with one (group) for the value, repeatable (the SDK's metric_definitions)",
        "job_name": "training job name (default: BASE_JOB_NAME-<theme>-<script>-<timestamp>)",
        "dry_run": "print the plan, start nothing",
        "allow_drift": "train even if the kernel and the image differ (the report records it)",
        "skip_preflight": "sagemaker: skip the checks run before anything is pushed or paid for",
        "detach": "sagemaker: start the job and return; `inv job attach NAME` follows it and collects its results",
    },
    iterable=["channel", "hyperparameter", "metric_definition"],
)
@clear_errors
def train(
    c,
    target=None,
    theme=None,
    py=None,
    entry_point=None,
    source_dir=None,
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
    from gs_ds_env import deploy as deploy_mod
    from gs_ds_env import metrics, script_mode

    if entry_point is not None and not entry_point.strip():
        raise ConfigError("--entry-point is empty: give the script to run, e.g. --entry-point train.py")
    settings = load_settings(target=target, theme=theme, py=py, entry_point=entry_point, source_dir=source_dir)
    if detach and settings.target != "sagemaker":
        raise ConfigError("--detach is for TARGET=sagemaker: a local job runs on this machine while you wait")
    if not settings.entry_point:
        if channel or hyperparameter or metric_definition:
            raise ConfigError("--channel, --hyperparameter and --metric-definition go with --entry-point (script mode)")
        deploy_mod.run(
            settings,
            skip_kernel=True,
            job_name=job_name,
            dry_run=dry_run,
            allow_drift=allow_drift,
            skip_preflight=skip_preflight,
            detach=detach,
        )
        return
    channels = script_mode.parse_channels(channel or [], settings.target)
    hyperparameters = script_mode.parse_hyperparameters(hyperparameter or [])
    definitions = metrics.parse_definitions(metric_definition or [])
    if dry_run:
        print(deploy_mod.script_plan(settings, hyperparameters, channels, definitions))
        return
    deploy_mod.run_script(
        settings,
        channels=channels or None,
        hyperparameters=hyperparameters,
        metric_definitions=definitions,
        job_name=job_name,
        allow_drift=allow_drift,
        skip_preflight=skip_preflight,
        detach=detach,
    )


@task(help={"name": "the job's name (runs/<name>/ holds its record)"})
@clear_errors
def attach(c, name):
    """Follow a SageMaker job started with --detach until it ends (Ctrl-C stops it), then collect its results."""
    from gs_ds_env import deploy as deploy_mod

    deploy_mod.attach(aws_settings(), name)


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
        "detach": "sagemaker: start the job and return; `inv job attach NAME` follows it and collects its results",
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
    from gs_ds_env import deploy as deploy_mod

    settings = load_settings(target=target, theme=theme, py=py)
    if detach and settings.target != "sagemaker":
        raise ConfigError("--detach is for TARGET=sagemaker: a local job runs on this machine while you wait")
    deploy_mod.run(
        settings,
        source=source,
        job_name=job_name,
        dry_run=dry_run,
        allow_drift=allow_drift,
        skip_preflight=skip_preflight,
        detach=detach,
    )


# ---- AWS evidence and policies -----------------------------------------------------------------------------
@task(help={"instance_type": "check this type instead of INSTANCE_TYPE (auto: pick)"})
@clear_errors
def instance(c, instance_type=None):
    """Rank training instance types by API acceptance, Service Quotas and price; show the pick and why."""
    from gs_ds_env import aws
    from gs_ds_env import instance as instance_mod

    settings = aws_settings(instance_type=instance_type)
    print(instance_mod.choose(settings, aws.session(settings)).evidence())


@task(name="iam-policy", help={"out": "write the three JSON files into this folder instead of printing them"})
@clear_errors
def iam_policy(c, out=None):
    """Least-privilege operator policy, execution-role policy and trust policy for this .env."""
    import json
    from pathlib import Path

    from gs_ds_env import iam

    policies = iam.all_policies(aws_settings())
    if not out:
        print(iam.render(policies))
        return
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, document in policies.items():
        (folder / name).write_text(json.dumps(document, indent=2) + "\n")
        print(folder / name)


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
    from gs_ds_env import notebook as notebook_mod

    notebook_path = Path(path).expanduser().resolve()
    if not notebook_path.is_file():
        raise ConfigError(f"notebook {path} does not exist: e.g. notebooks/titanic-sagemaker.ipynb")
    settings = load_settings(theme=theme or notebook_mod.theme_of(notebook_path), py=py)
    try:
        notebook_mod.execute(settings, notebook_path, number(1800 if timeout is None else timeout, "--timeout", int))
    except notebook_mod.NotebookFailed as error:
        raise Exit(f"error: {error}", code=1) from None


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
    from gs_ds_env import app as app_mod

    try:
        app_mod.run(load_settings(theme=theme, py=py), number(8501 if port is None else port, "--port", int), check)
    except app_mod.AppError as error:
        raise Exit(f"error: {error}", code=1) from None


# ---- serving -----------------------------------------------------------------------------------------------------
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
    name="deploy",
    help={
        "run": "the run whose model to deploy (default: the theme's newest completed run)",
        "model_data": "a model.tar.gz or its s3:// URI instead of a run",
        "theme": "theme (default: the run's, else THEME)",
        "py": "Python 3.N (with --model-data)",
        "instance_type": "serverless (default), auto (the smallest real-time instance for the model) or ml.<type>",
        "dry_run": "print the plan (every AWS call), create nothing",
    },
)
@clear_errors
def endpoint_deploy(c, run=None, model_data=None, theme=None, py=None, instance_type="serverless", dry_run=False):
    """A SageMaker endpoint for a trained model (TARGET=sagemaker): sized from its measured memory, tagged."""
    from gs_ds_env.serving import endpoint, model_source

    settings = aws_settings(theme=theme, py=py)
    source = model_source.resolve(settings, run, model_data, theme_given=theme is not None)
    endpoint.size(1.0, instance_type)  # the option is checked before anything runs
    print("\n".join(endpoint.plan(settings, source, instance_type)), flush=True)
    if not dry_run:
        endpoint.deploy(settings, source, instance_type)


@task(name="delete", help={"name": "the endpoint (see inv endpoint.list)", "dry_run": "print what would be deleted"})
@clear_errors
def endpoint_delete(c, name, dry_run=False):
    """Delete one of this project's endpoints with its endpoint config and model."""
    from gs_ds_env.serving import endpoint

    settings = aws_settings()
    steps = endpoint.delete_plan(settings, name)
    print("\n".join(("would " if dry_run else "") + step for step in steps), flush=True)
    if not dry_run:
        endpoint.delete(settings, name)


@task(name="list")
@clear_errors
def endpoint_list(c):
    """This project's SageMaker endpoints: status, size and cost per hour (a forgotten one keeps costing)."""
    from gs_ds_env.serving import endpoint

    print(endpoint.table(endpoint.listing(aws_settings())))


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


# ---- operating the machine ------------------------------------------------------------------------------------
@task(
    help={
        "threshold": "disk use in % above which a disk check fails (default 80)",
        "json": "print JSON",
        "preflight": "the checks before a paid SageMaker job (AWS, with your credentials) and the image itself",
        "notebook_root": "the notebook instance's persistent volume (default /home/ec2-user/SageMaker)",
    }
)
@clear_errors
def doctor(c, threshold=None, json=False, notebook_root=None, preflight=False):
    """One line per check (disk, caches, Docker, tools, kernels, lifecycle): ok / warn / fail and the fix.
    --preflight: before a paid job, the AWS checks (caller, ECR, role, bucket, quota) and the image on a sample."""
    from pathlib import Path

    from gs_ds_env import doctor as doctor_mod

    try:
        threshold = number(80 if threshold is None else threshold, "--threshold")
        if not 0 < threshold <= 100:
            raise ConfigError(f"--threshold {threshold:g} is not a percentage: use 1-100")
        if preflight:
            from gs_ds_env import aws, image
            from gs_ds_env import preflight as preflight_mod

            settings = aws_settings()
            checks = preflight_mod.cheap_checks(settings, aws.session(settings))
            built = image.build(settings)
            staged = data_mod.split_and_stage(settings)
            checks.append(preflight_mod.image_check(settings, built.local_ref, staged.channels))
        else:
            root = Path(notebook_root) if notebook_root else doctor_mod.NOTEBOOK_ROOT
            checks = doctor_mod.run(load_settings(), threshold, root)
    except (ConfigError, data_mod.DataError) as error:
        if json:  # --json prints JSON whatever it finds
            import json as json_mod

            print(json_mod.dumps({"ok": False, "error": str(error), "checks": []}, indent=2))
        raise
    print(doctor_mod.as_json(checks) if json else doctor_mod.table(checks))
    if doctor_mod.failed(checks):
        raise Exit(code=1)


@task(
    help={
        "uv": "uv cache prune",
        "pip": "pip cache purge",
        "docker": "this project's images no theme uses now",
        "runs": "run folders (with --older-than)",
        "older_than": "days (runs only; default 30)",
        "all": "all of the above",
        "dry_run": "print what would be removed and remove nothing",
    }
)
@clear_errors
def clean(c, uv=False, pip=False, docker=False, runs=False, older_than=None, all=False, dry_run=False):
    """Free disk through the tools' own commands; never a venv or a kernel (that is inv kernel-remove)."""
    from gs_ds_env import clean as clean_mod

    if not (uv or pip or docker or runs or all):
        raise Exit("error: say what to clean: --uv, --pip, --docker, --runs [--older-than DAYS] or --all", code=2)
    older_than = number(30 if older_than is None else older_than, "--older-than")
    if older_than < 0:
        raise Exit(f"error: --older-than {older_than:g} is negative: give a number of days", code=2)
    settings = load_settings()
    steps = clean_mod.plan(
        settings, uv=uv or all, pip=pip or all, docker=docker or all, runs=runs or all, older_than=older_than
    )
    print("\n".join(clean_mod.describe(steps, dry_run)), flush=True)
    if not dry_run and steps:
        print(f"freed {clean_mod.execute(settings, steps) / 1e6:.0f} MB")


def _group(name: str, *tasks, default=None) -> Collection:
    """A namespace of tasks under their short names (`inv kernel.list`); `default` runs as `inv <name>`."""
    group = Collection(name)
    for short, function in tasks:
        group.add_task(function, name=short, default=function is default)
    return group


NAMESPACES = [
    _group(
        "kernel",
        ("create", kernel),
        ("list", kernels),
        ("remove", kernel_remove),
        ("restore", kernels_restore),
        ("lock", lock),
        ("parity", parity),
        default=kernel,
    ),
    _group("theme", ("new", theme_new), ("check", theme_check), ("list", theme_list), ("remove", theme_remove)),
    _group("image", ("build", build), ("push", push), ("app", app), default=build),
    _group("data", ("stage", data), default=data),
    _group("job", ("train", train), ("deploy", deploy), ("attach", attach), ("notebook", notebook), default=deploy),
    _group("serve", ("local", serve), ("predict", predict), ("transform", transform), default=serve),
    _group("endpoint", ("deploy", endpoint_deploy), ("delete", endpoint_delete), ("list", endpoint_list)),
    _group("aws", ("instance", instance), ("iam-policy", iam_policy)),
    _group("ops", ("doctor", doctor), ("clean", clean)),
]
# The flat names the README, older notes and muscle memory use: each is the same task as in its namespace.
FLAT_ALIASES = {
    "kernels": kernels,
    "kernel-remove": kernel_remove,
    "kernels-restore": kernels_restore,
    "lock": lock,
    "parity": parity,
    "build": build,
    "push": push,
    "app": app,
    "train": train,
    "deploy": deploy,
    "attach": attach,
    "notebook": notebook,
    "predict": predict,
    "transform": transform,
    "instance": instance,
    "iam-policy": iam_policy,
    "doctor": doctor,
    "clean": clean,
}

ns = Collection()
for namespace in NAMESPACES:
    ns.add_collection(namespace)
for alias, function in FLAT_ALIASES.items():
    ns.add_task(function, name=alias)
