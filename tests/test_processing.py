"""`inv process` in local mode, real containers (the tabular image): the Processing contract as a script written
for the SDK's Processor sees it (arguments exactly, inputs mounted, resourceconfig.json), a failing script recorded
with its reason, Ctrl-C leaving nothing running, the Titanic flow as prepare -> train -> evaluate, and every bad
option refused in one line before anything starts."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time

import pytest
from conftest import INV, containers_of, one_line_refusal, run_inv, tool_env

# What a script for SageMaker Processing reads and writes: nothing of this project's.
PROBE = """
import json, os, pathlib, sys, time
args = sys.argv[1:]
if "--sleep" in args:
    print("started", flush=True)
    time.sleep(600)
if "--fail" in args:
    print("reading rows", flush=True)
    print("ValueError: bad row 17 in events.csv", file=sys.stderr, flush=True)
    sys.exit(3)
root = pathlib.Path("/opt/ml/processing/input")
seen = {
    "argv": args,
    "inputs": sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()),
    "resourceconfig": json.loads(pathlib.Path("/opt/ml/config/resourceconfig.json").read_text()),
    "environment": sorted(os.environ),
}
out = pathlib.Path("/opt/ml/processing/output/seen")
(out / "deeper").mkdir(parents=True, exist_ok=True)
(out / "seen.json").write_text(json.dumps(seen))
(out / "deeper/rows.txt").write_text("".join(open(p).read() for p in sorted((root / "events").rglob("*.csv"))))
print("test:rows=3", flush=True)
"""
# Arguments as a shell would never pass them unchanged: spaces, '=', a glob, a leading '--', non-ASCII.
ARGUMENTS = ["--since", "2026-01-01", "two words", "--flag=a=b", "*", "ünïcode"]


def local_env(base_image: str) -> dict[str, str]:
    return {"PY": "3.11", "BASE_IMAGE": base_image, "THEME": "tabular", "TARGET": "local"}


@pytest.fixture(scope="module")
def probe(copy, tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe")
    (folder / "code").mkdir()
    (folder / "code/probe.py").write_text(PROBE)
    events = folder / "events"
    (events / "day2").mkdir(parents=True)
    (events / "a.csv").write_text("user,amount\nu1,3\n")
    (events / "day2/b.csv").write_text("u2,4\nu3,5\n")
    (folder / "lookup.csv").write_text("code,name\n1,one\n")
    return folder


def runs_of(copy) -> set[str]:
    return {p.name for p in (copy / "runs").glob("*")}


def record_of(copy, job: str) -> dict:
    return json.loads((copy / "runs" / job / "run.json").read_text())


@pytest.mark.docker
@pytest.mark.slow
def test_the_script_gets_exactly_its_arguments_inputs_and_host(copy, probe, base_image, tabular_image):
    options = ["--code", str(probe / "code/probe.py"), "--input", f"events={probe / 'events'}",
               "--input", f"lookup={probe / 'lookup.csv'}", "--output", "seen",
               *(f"--argument={argument}" for argument in ARGUMENTS)]  # fmt: skip
    plan = run_inv(copy, "process", *options, "--dry-run", **local_env(base_image))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"arguments, exactly: {ARGUMENTS!r}" in plan.stdout
    assert "runs `python3 /opt/ml/processing/input/code/probe.py`" in plan.stdout
    assert runs_of(copy) == set() and containers_of(copy) == []  # a plan starts nothing

    job = run_inv(copy, "process", *options, "--job-name", "proc-contract", **local_env(base_image))
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    run_dir = copy / "runs/proc-contract"
    seen = json.loads((run_dir / "output/seen/seen.json").read_text())
    assert seen["argv"] == ARGUMENTS
    assert seen["inputs"] == ["code/probe.py", "events/a.csv", "events/day2/b.csv", "lookup/lookup.csv"]
    host = seen["resourceconfig"]["current_host"]
    assert seen["resourceconfig"]["hosts"] == [host]
    assert not [name for name in seen["environment"] if name.startswith(("SM_HP", "SM_HPS", "SM_TRAINING"))]
    assert (run_dir / "output/seen/deeper/rows.txt").read_text() == "user,amount\nu1,3\nu2,4\nu3,5\n"

    record = record_of(copy, "proc-contract")
    assert (record["kind"], record["status"], record["arguments"]) == ("processing", "completed", ARGUMENTS)
    assert record["outputs"]["seen"]["files"] == 2 and record["metrics"] == {"test:rows": 3.0}
    assert set(record["inputs"]) == {"events", "lookup"} and (run_dir / "code/probe.py").is_file()
    events = record["inputs"]["events"]
    assert (events["files"], events["bytes"]) == (2, len("user,amount\nu1,3\n") + len("u2,4\nu3,5\n"))
    assert len(events["sha256"]) == 64 and events["sha256"] != record["inputs"]["lookup"]["sha256"]
    report = (run_dir / "report.md").read_text()
    assert "as processing job `proc-contract`" in report and "## Arguments" in report and "Model:" not in report
    assert f"output seen: {run_dir / 'output/seen'}" in job.stdout
    assert containers_of(copy) == []
    # A processing run made data, not a model: serving it is refused in one line.
    one_line_refusal(run_inv(copy, "serve", "--run", "proc-contract", **local_env(base_image)), "is a processing job")


@pytest.mark.docker
@pytest.mark.slow
def test_a_failing_script_is_recorded_with_its_reason_and_leaves_nothing(copy, probe, base_image, tabular_image):
    job = run_inv(copy, "process", "--code", str(probe / "code/probe.py"), "--argument=--fail", "--job-name",
                  "proc-fails", **local_env(base_image))  # fmt: skip
    assert job.returncode == 1, job.stdout + job.stderr
    last = job.stderr.strip().splitlines()[-1]  # progress goes to stderr too; the error is its last line
    assert last.startswith("error: local processing job proc-fails failed: ValueError: bad row 17 in events.csv"), last
    assert "(exit code 3)" in last and "Traceback" not in job.stdout + job.stderr
    record = record_of(copy, "proc-fails")
    assert record["status"] == "failed" and record["exit_code"] == 3
    assert record["reason"] == "ValueError: bad row 17 in events.csv (exit code 3)"
    assert record["stderr_tail"] == ["reading rows", "ValueError: bad row 17 in events.csv"]
    assert "reading rows" in (copy / "runs/proc-fails/job.log").read_text()
    assert "**Status: failed**" in (copy / "runs/proc-fails/report.md").read_text()
    assert containers_of(copy) == []


@pytest.mark.docker
@pytest.mark.slow
def test_ctrl_c_stops_the_container_and_records_the_interruption(copy, probe, base_image, tabular_image):
    process = subprocess.Popen(
        [INV, "process", "--code", str(probe / "code/probe.py"), "--argument=--sleep", "--job-name", "proc-stopped"],
        cwd=copy, env=tool_env(WORKING_DIR=str(copy.parent / "work"), **local_env(base_image)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    log = copy / "runs/proc-stopped/job.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.is_file() and "started" in log.read_text()):
        assert process.poll() is None, process.communicate()
        time.sleep(0.5)
    assert "started" in log.read_text() and containers_of(copy), "the job never started (job.log is line-buffered)"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    assert "Traceback" not in out + err
    assert record_of(copy, "proc-stopped")["status"].startswith("interrupted")
    assert (copy / "runs/proc-stopped/INTERRUPTED").is_file()
    assert containers_of(copy) == []


@pytest.mark.docker
@pytest.mark.slow
def test_titanic_as_prepare_train_evaluate_gives_the_auc_the_training_run_reported(
    copy, base_image, tabular_image, titanic_csv
):
    env = local_env(base_image)
    prepared = run_inv(copy, "process", "--code", "themes/tabular/example/prepare.py", "--input",
                       f"raw={titanic_csv}", "--output", "train", "--output", "validation", "--job-name", "t-prepare",
                       **env)  # fmt: skip
    assert prepared.returncode == 0, (prepared.stdout + prepared.stderr)[-3000:]
    split = copy / "runs/t-prepare/output"
    rows = {name: list(csv.DictReader((split / name / f"{name}.csv").open())) for name in ("train", "validation")}
    ids = {name: {row["PassengerId"] for row in part} for name, part in rows.items()}
    raw_ids = {row["PassengerId"] for row in csv.DictReader(titanic_csv.open())}
    assert (len(rows["train"]), len(rows["validation"])) == (712, 179)  # 0.2 held out, stratified, as the host does
    assert not ids["train"] & ids["validation"] and ids["train"] | ids["validation"] == raw_ids

    trained = run_inv(copy, "train", "--entry-point", "themes/tabular/example/train.py", "--channel",
                      f"train={split / 'train'}", "--channel", f"validation={split / 'validation'}", "--job-name",
                      "t-train", **env)  # fmt: skip
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-3000:]
    reported = record_of(copy, "t-train")["metrics"]["validation:auc"]

    evaluated = run_inv(copy, "process", "--code", "themes/tabular/example/evaluate.py", "--input",
                        f"model={copy / 'runs/t-train/model.tar.gz'}", "--input", f"test={split / 'validation'}",
                        "--output", "evaluation", "--job-name", "t-evaluate", **env)  # fmt: skip
    assert evaluated.returncode == 0, (evaluated.stdout + evaluated.stderr)[-3000:]
    evaluation = json.loads((copy / "runs/t-evaluate/output/evaluation/evaluation.json").read_text())
    assert evaluation["rows"] == 179
    assert evaluation["binary_classification_metrics"]["auc"]["value"] == reported
    assert record_of(copy, "t-evaluate")["metrics"]["test:auc"] == reported
    assert 0.75 < reported < 1


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--input", "raw"], "is not name=path"),
        (["--input", "code=."], "not 'code'"),
        (["--input", "raw=/nonexistent/events"], "does not exist"),
        (["--input", "raw=s3://bucket/events/"], "s3:// inputs need TARGET=sagemaker"),
        (["--input", "raw=.", "--input", "raw=."], "given twice"),
        (["--output", "daily=s3://bucket/daily/"], "TARGET=local writes runs/<job>/output/daily/"),
        (["--output", "bad/name"], "is not name[=s3://...]"),
        (["--shard"], "give an --input"),
        (["--instance-count", "2"], "local mode runs one container"),
        (["--detach"], "--detach is for TARGET=sagemaker"),
    ],
)
def test_bad_processing_options_are_refused_in_one_line_before_anything_starts(copy, options, expected):
    script = copy / "themes/tabular/example/prepare.py"
    before = runs_of(copy)
    refused = run_inv(copy, "process", "--code", str(script), *options, TARGET="local")
    one_line_refusal(refused, expected)
    assert runs_of(copy) == before


def test_a_missing_script_is_refused_in_one_line(copy):
    one_line_refusal(run_inv(copy, "process", "--code", "nowhere/prepare.py", TARGET="local"), "nowhere/prepare.py")
    one_line_refusal(run_inv(copy, "process", TARGET="local"), "--code is missing")
    helped = run_inv(copy, "process", "--help")
    assert helped.returncode == 0 and "--argument" in helped.stdout and "--shard" in helped.stdout
