"""`inv data.*` — Data: the Titanic CSV fetched, verified, split and staged (local folder or S3)."""

from __future__ import annotations

from invoke import task

from gs_ds_env.settings import load_settings

from .common import clear_errors, group


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
    from gs_ds_env import data as data_mod
    from gs_ds_env.data import s3_data
    from gs_ds_env.job import targets

    settings = load_settings(target=target)
    where = targets.TARGETS[settings.target]()
    if dry_run:
        print("\n".join(s3_data.stage_plan(settings, source) + where.data_plan(settings)))
        return
    staged = data_mod.split_and_stage(settings, source)
    for channel, folder in staged.channels.items():
        print(f"{channel}: {folder} ({staged.rows[channel]} rows)")
    for entry in where.upload_data(settings, staged):
        print(f"{entry['uri']} sha256 {entry['sha256']} ({'uploaded' if entry['sent'] else 'already there'})")


namespace = group("data", ("stage", data), default=data)
