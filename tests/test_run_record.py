"""The run record while a run goes on (job/draft.py) and as it is written (job/report.py), without Docker."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest


def test_a_draft_refuses_what_a_record_lacks_and_its_parts_refine_the_targets_under_the_outcome(scratch_settings):
    from gs_ds_env.job.deploy import Timer
    from gs_ds_env.job.draft import RunDraft

    built = SimpleNamespace(
        uri="gs-ds-env:t-1", content_tag="t-1", size_bytes=1, image_id=None, digest=None, pushed=None
    )
    draft = RunDraft(scratch_settings, "gs-draft", built, ({"checked": False, "reason": "none"}, None), Timer())
    draft.add(hyperparameters={"depth": "3"}, versions={"python": "3.11"}, kind="processing")
    draft.add(log_stream="/aws/sagemaker/ProcessingJobs / gs-draft/*")  # the program's part, added later
    with pytest.raises(TypeError, match="not fields of a run record: log_steam"):
        draft.add(log_steam="a typo would otherwise vanish into the record")
    with pytest.raises(TypeError, match="not fields of a run record: stauts"):
        draft.write(None, [], channels={}, stauts="failed")
    target = {"log_stream": "/aws/sagemaker/TrainingJobs / gs-draft/algo-1-*", "account": "123456789012"}
    run_json = draft.write(None, [], channels={"raw": "s3://b/raw/"}, target_part=target, status="failed", reason="r")
    record = json.loads(run_json.read_text())
    assert record["log_stream"] == "/aws/sagemaker/ProcessingJobs / gs-draft/*"  # the part refines the target's
    assert (record["account"], record["status"], record["reason"]) == ("123456789012", "failed", "r")
    assert record["hyperparameters"] == {"depth": "3"} and record["channels"] == {"raw": "s3://b/raw/"}
    assert (run_json.parent / "report.md").read_text().startswith("# Run report: gs-draft")


def test_each_target_says_how_to_reproduce_its_run_and_the_report_says_where_it_ran(scratch_settings):
    """The reproduce commands and the report's summary come from the run's target: a local run lists no AWS
    setting and no AWS command; a SageMaker run lists the AWS settings it used and where its results are."""
    from gs_ds_env.job import plans, report, targets

    local = plans.reproduce_commands(scratch_settings, targets.LocalTarget(), "gs-here")
    assert f"make deploy THEME={scratch_settings.theme} PY={scratch_settings.py} TARGET=local" in local
    assert not [line for line in local if "aws " in line or "S3_BUCKET" in line or "iam-policy" in line]

    on_aws = scratch_settings.replace(
        target="sagemaker", s3_bucket="gs-team-bucket", instance_count=2, use_spot=True, max_wait=7200,
        sagemaker_role_arn="arn:aws:iam::123456789012:role/gs-run",
    )  # fmt: skip
    lines = plans.reproduce_commands(on_aws, targets.SageMakerTarget(), "gs-there")
    assert "# S3_BUCKET=gs-team-bucket" in lines and "# USE_SPOT=true" in lines and "# INSTANCE_COUNT=2" in lines
    assert "# SAGEMAKER_ROLE_ARN=arn:aws:iam::123456789012:role/gs-run" in lines
    assert lines.index("inv iam-policy --out iam/   # attach these before the first run (README: AWS set-up)") < (
        lines.index(f"make deploy THEME={on_aws.theme} PY={on_aws.py} TARGET=sagemaker")
    )
    assert [line for line in lines if line.startswith("aws ")] == [
        f"aws s3 ls s3://gs-team-bucket/{on_aws.s3_prefix}/output/gs-there/output/",
        f"aws logs tail /aws/sagemaker/TrainingJobs --log-stream-name-prefix gs-there --region {on_aws.aws_region}",
    ]
    assert not [line for line in plans.reproduce_commands(on_aws, targets.SageMakerTarget()) if "aws " in line]

    image = {"uri": "gs-ds-env:t-1", "content_tag": "t-1"}
    common = dict(theme="t", kernel="t_311", job_name="gs-r", image=image, parity={}, versions={}, hyperparameters={})
    common.update(channels={}, metrics={}, model_artifact="", timings={}, pictures=[], command="inv deploy")
    here = report.render(report.RunRecord(target="local", region="eu-west-1", **common))
    there = report.render(
        report.RunRecord(
            target="sagemaker", region="eu-west-1", instance_type="ml.m5.large", instance_count=2, spot=True, **common
        )
    )
    assert "on SageMaker local mode (Docker on this machine)" in here and "Instance count / spot" not in here
    assert "on SageMaker in eu-west-1 (2 x ml.m5.large)" in there and "| Instance count / spot | `2 / True` |" in there
