"""`inv pipeline.run titanic` on this machine (the SDK's LocalPipelineSession, real containers in the tabular image):
every step succeeds, the registered version's metrics are the evaluation's, the new passengers are all predicted,
the record has the graph; a threshold above the AUC takes the FailStep branch and the record says why; the
registry's verbs and `inv serve --model-package`; bad names and parameters refused in one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import containers_of, one_line_refusal, run_inv


@pytest.fixture(scope="module")
def env(base_image, titanic_csv) -> dict[str, str]:
    return {
        "PY": "3.11",
        "BASE_IMAGE": base_image,
        "THEME": "tabular",
        "TARGET": "local",
        "TITANIC_CSV": str(titanic_csv),
    }


def newest_run(copy, before: set) -> dict:
    (run_json,) = [p for p in (copy / "runs").glob("titanic-*/run.json") if p.parent.name not in before]
    return json.loads(run_json.read_text()) | {"_dir": str(run_json.parent)}


def pipeline_runs(copy) -> set:
    return {p.name for p in (copy / "runs").glob("titanic-*")}


@pytest.mark.docker
@pytest.mark.slow
def test_the_titanic_pipeline_runs_every_step_registers_and_predicts(copy, env, tabular_image):
    plan = run_inv(copy, "pipeline.run", "titanic", "--dry-run", **env)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "flowchart LR" in plan.stdout and '"AucThreshold": 0.8' in plan.stdout
    assert not (copy / "runs").exists()  # a plan runs nothing and writes nothing

    ran = run_inv(copy, "pipeline.run", "titanic", **env)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-4000:]
    record = newest_run(copy, set())
    steps = record["steps"]
    assert record["status"] == "Succeeded"
    assert {name: step["status"] for name, step in steps.items()} == {
        "prepare": "Succeeded", "train": "Succeeded", "evaluate": "Succeeded", "auc-good-enough": "Succeeded",
        "predict-model-CreateModel": "Succeeded", "predict": "Succeeded",
    }  # fmt: skip
    assert "auc-too-low" not in steps
    for step in ("prepare", "train", "evaluate", "predict"):
        assert f"[pipeline] {step}: Succeeded after" in ran.stdout
    # The evaluation, read back from the step's own output, is what the record and the registry keep.
    evaluation_file = steps["evaluate"]["outputs"]["evaluation"].removeprefix("file://") + "/evaluation.json"
    evaluation = json.loads(Path(evaluation_file).read_text())
    assert record["evaluation"] == {"evaluation": evaluation}
    auc = evaluation["binary_classification_metrics"]["auc"]["value"]
    assert 0.8 <= auc < 1
    registry = json.loads((copy / "runs/model-registry/gs-ds-env-titanic.json").read_text())
    (version,) = registry["versions"]
    assert version["metrics"] == evaluation and version["status"] == "PendingManualApproval"
    assert record["registered"] == {"group": "gs-ds-env-titanic", "version": 1, "status": "PendingManualApproval"}
    assert version["execution"] == record["_dir"].rsplit("/", 1)[-1]
    # Every new passenger predicted: 50 rows in, 50 probabilities out.
    assert record["predictions"]["predict"]["rows_in"] == 50 == record["predictions"]["predict"]["rows_out"]
    predictions = (copy / record["predictions"]["predict"]["path"]).rglob("*.out")
    values = [float(line) for path in predictions for line in path.read_text().split() if line]
    assert len(values) == 50 and all(0 <= v <= 1 for v in values)
    report = Path(record["_dir"], "report.md").read_text()
    assert "```mermaid" in report and ":::Succeeded" in report and '"auc-too-low<br/>Fail"]:::NotRun' in report
    assert f"auc {auc}" in report and "Local mode has no model registry" in report
    assert containers_of(copy) == []

    # The registry's verbs: listed with its AUC, approved, then what serve --model-package picks.
    listed = run_inv(copy, "model.list", **env)
    assert listed.returncode == 0 and re.search(
        rf"gs-ds-env-titanic\s+1\s+PendingManualApproval\s+{auc:.4f}", listed.stdout
    )
    one_line_refusal(
        run_inv(copy, "serve", "--model-package", "latest-approved", "--dry-run", **env), "no approved model"
    )
    approved = run_inv(copy, "model.approve", "1", **env)
    assert approved.returncode == 0 and "version 1: Approved" in approved.stdout, approved.stderr
    served = run_inv(copy, "serve", "--model-package", "latest-approved", "--dry-run", **env)
    assert served.returncode == 0, served.stdout + served.stderr
    assert "model: gs-ds-env-titanic version 1 (Approved)" in served.stdout
    assert "runs/model-registry/gs-ds-env-titanic/1/model.tar.gz" in served.stdout
    one_line_refusal(run_inv(copy, "model.approve", "7", **env), "no model version '7'", "gs-ds-env-titanic/1")


@pytest.mark.docker
@pytest.mark.slow
def test_a_threshold_above_the_auc_takes_the_fail_branch_and_the_record_says_why(copy, env, tabular_image):
    before = pipeline_runs(copy) if (copy / "runs").exists() else set()
    ran = run_inv(copy, "pipeline.run", "titanic", "--param", "AucThreshold=0.99", **env)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    last = ran.stderr.strip().splitlines()[-1]
    assert re.search(r"failed: auc-too-low: AUC 0\.\d+ is below AucThreshold 0\.99", last), last
    record = newest_run(copy, before)
    assert record["status"] == "Failed" and record["parameters"]["AucThreshold"] == 0.99
    assert record["steps"]["auc-good-enough"]["metadata"]["Condition"]["Outcome"] in (False, "False", "false")
    assert record["steps"]["auc-too-low"]["status"] == "Failed"
    assert "predict" not in record["steps"] and record["registered"] == {}
    report = Path(record["_dir"], "report.md").read_text()
    assert "Condition `auc-good-enough`: false" in report and '"auc-too-low<br/>Fail · 0 s"]:::Failed' in report
    assert containers_of(copy) == []


@pytest.mark.parametrize(
    "args, expected",
    [
        (["pipeline.run", "nothere"], "no pipeline 'nothere': pipelines/ holds titanic"),
        (["pipeline.run", "Bad_Name"], "is not a pipeline name"),
        (["pipeline.run", "titanic", "--param", "Threshold=1", "--dry-run"], "takes RawData=, AucThreshold="),
        (["pipeline.run", "titanic", "--param", "AucThreshold=high", "--dry-run"], "AucThreshold is a float"),
        (["pipeline.run", "titanic", "--detach"], "--detach is for TARGET=sagemaker"),
        (["pipeline.schedule", "titanic"], "give --cron"),
    ],
)
def test_bad_pipeline_requests_are_refused_in_one_line(copy, env, args, expected):
    one_line_refusal(run_inv(copy, *args, **env), expected)
