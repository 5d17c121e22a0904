"""`inv ops.*` — Operating the machine: doctor (disk, kernels, images), clean (caches, images, runs)."""

from __future__ import annotations

from pathlib import Path

from invoke import Exit, task

from gs_ds_env.settings import ConfigError, load_settings

from .common import aws_settings, clear_errors, group, number


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
    from gs_ds_env import data as data_mod
    from gs_ds_env.ops import doctor as doctor_mod

    try:
        threshold = number(80 if threshold is None else threshold, "--threshold")
        if not 0 < threshold <= 100:
            raise ConfigError(f"--threshold {threshold:g} is not a percentage: use 1-100")
        if preflight:
            from gs_ds_env import aws, image
            from gs_ds_env.ops import preflight as preflight_mod

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
        "orphans": "what a killed command left running: local endpoints, transforms, jobs, labs and their folders",
        "all_checkouts": "with --docker: also images other checkouts of the project built (the plan says whose)",
        "all": "all of the above (this checkout's)",
        "dry_run": "print what would be removed and remove nothing",
    }
)
@clear_errors
def clean(
    c,
    uv=False,
    pip=False,
    docker=False,
    runs=False,
    older_than=None,
    orphans=False,
    all_checkouts=False,
    all=False,
    dry_run=False,
):
    """Free disk and stop leftovers through the tools' own commands; never a venv or a kernel (inv kernel-remove)."""
    from gs_ds_env.ops import clean as clean_mod

    if not (uv or pip or docker or runs or orphans or all):
        raise Exit(
            "error: say what to clean: --uv, --pip, --docker, --runs [--older-than DAYS], --orphans or --all", code=2
        )
    older_than = number(30 if older_than is None else older_than, "--older-than")
    if older_than < 0:
        raise Exit(f"error: --older-than {older_than:g} is negative: give a number of days", code=2)
    settings = load_settings()
    steps = clean_mod.plan(
        settings, uv=uv or all, pip=pip or all, docker=docker or all, runs=runs or all, older_than=older_than,
        orphans=orphans or all, all_checkouts=all_checkouts,
    )  # fmt: skip
    print("\n".join(clean_mod.describe(steps, dry_run)), flush=True)
    if not dry_run and steps:
        print(f"freed {clean_mod.execute(settings, steps) / 1e6:.0f} MB")


@task(
    help={
        "json": "print JSON",
        "aws": "look on AWS too (TARGET=sagemaker always does): jobs, endpoints, pipelines, the notebook instance",
        "max_hours": "exit 1 when something has run longer than this (default STATUS_MAX_HOURS)",
    }
)
@clear_errors
def status(c, json=False, aws=False, max_hours=None):
    """Everything this project started that still runs or bills, here and on AWS: age, USD/h, how to stop it."""
    from gs_ds_env.ops import status as status_mod

    settings = load_settings()
    check_aws = aws or settings.on_aws
    if check_aws:
        settings = aws_settings(uses=())
    limit = settings.status_max_hours if max_hours is None else number(max_hours, "--max-hours")
    items, notes = status_mod.collect(settings, check_aws)
    print(status_mod.as_json(items, notes) if json else status_mod.table(items, notes), flush=True)
    old = status_mod.too_old(items, limit)
    if old:
        raise Exit(
            f"{len(old)} running longer than {limit:g} h: " + ", ".join(f"{i.kind} {i.name}" for i in old), code=1
        )


namespace = group("ops", ("doctor", doctor), ("clean", clean), ("status", status))
