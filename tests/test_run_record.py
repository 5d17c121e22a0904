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
