"""`inv aws.*` — AWS evidence and policies: the instance type, the least-privilege IAM policy."""

from __future__ import annotations

from pathlib import Path

from invoke import task

from gs_ds_env.settings import ConfigError

from .common import aws_settings, clear_errors, group


@task(
    help={
        "instance_type": "check this type instead of INSTANCE_TYPE (auto: pick)",
        "job": "training (inv train) or processing (inv process): whose types, quotas and prices",
    }
)
@clear_errors
def instance(c, instance_type=None, job="training"):
    """Rank training (or processing) instance types by API acceptance, Service Quotas and price; show the pick."""
    from gs_ds_env import aws
    from gs_ds_env.aws import instance as instance_mod

    if job not in instance_mod.JOBS:
        raise ConfigError(f"--job {job!r}: give {' or '.join(instance_mod.JOBS)}")
    settings = aws_settings(instance_type=instance_type)
    print(instance_mod.choose(settings, aws.session(settings), job=job).evidence())


@task(name="iam-policy", help={"out": "write the three JSON files into this folder instead of printing them"})
@clear_errors
def iam_policy(c, out=None):
    """Least-privilege operator policy, execution-role policy and trust policy for this .env."""
    import json

    from gs_ds_env.aws import iam

    policies = iam.all_policies(aws_settings())
    if not out:
        print(iam.render(policies))
        return
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, document in policies.items():
        (folder / name).write_text(json.dumps(document, indent=2) + "\n")
        print(folder / name)


namespace = group("aws", ("instance", instance), ("iam-policy", iam_policy))
