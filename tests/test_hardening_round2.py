"""Hardening, round 2: what a careful operator tried and got wrong answers to. Each test fails on the code before
the fix: data trained on that nobody staged, `inv clean` doing other than its plan, bad values answered with a
traceback or a shell syntax error. (The clean, lifecycle, kernelspec and kernel-rollback points are tested beside
their features: test_operations.py, test_kernel_interruptions.py; the image build ones in
test_image_and_local_deploy.py.)"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import INV, REPO, clone_project, tool_env

from gs_ds_env.ops import clean
from gs_ds_env.settings import ConfigError, load_settings


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    return clone_project(tmp_path_factory.mktemp("round2") / "project")


def inv(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [INV, *args], cwd=project, env=tool_env(WORKING_DIR=str(project.parent / "work"), **env), capture_output=True,
        text=True,
    )  # fmt: skip


def one_line_refusal(result: subprocess.CompletedProcess, *expected: str, code: int = 2) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stdout + result.stderr
    for text in expected:
        assert text in line, line


def test_an_extra_file_in_a_staged_channel_is_refused_and_kept(copy, titanic_csv):
    staged = inv(copy, "data", TITANIC_CSV=str(titanic_csv))
    assert staged.returncode == 0, staged.stderr
    train = Path(staged.stdout.split("train: ", 1)[1].split(" (", 1)[0])
    validation = Path(staged.stdout.split("validation: ", 1)[1].split(" (", 1)[0])
    leaked = train / "validation-copy.csv"
    shutil.copy(validation / "validation.csv", leaked)  # the leak that raised the validation AUC to 0.97
    try:
        refused = inv(copy, "data", TITANIC_CSV=str(titanic_csv))
        one_line_refusal(refused, "validation-copy.csv besides train.csv", "the job would train on it too")
        assert leaked.is_file()  # nothing lost: it may be someone's
        plan = inv(copy, "deploy", "--dry-run", TITANIC_CSV=str(titanic_csv))
        assert plan.returncode == 0  # a plan stages nothing, so it says nothing yet
    finally:
        leaked.unlink()
    assert inv(copy, "data", TITANIC_CSV=str(titanic_csv)).returncode == 0


def test_clean_does_exactly_its_plan_or_nothing(copy, tmp_path):
    settings = load_settings(repo_root=copy, working_dir=tmp_path / "work")
    runs = copy / "runs"
    for name in ("old-a", "old-b"):
        (runs / name).mkdir(parents=True)
        (runs / name / "run.json").write_text("{}")
    steps = clean.plan(settings, uv=False, pip=False, docker=False, runs=True, older_than=0)
    assert {Path(step.target).name for step in steps} >= {"old-a", "old-b"}
    # Between the plan and the run, old-b becomes a link to something else: nothing at all is removed.
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "run.json").write_text("{}")
    shutil.rmtree(runs / "old-b")
    (runs / "old-b").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(clean.CleanError, match="old-b changed since the plan was made"):
        clean.execute(settings, steps)
    assert (runs / "old-a/run.json").is_file() and (elsewhere / "run.json").is_file()
    (runs / "old-b").unlink()
    shutil.rmtree(runs / "old-a")


@pytest.mark.parametrize(
    "value, fine",
    [("team/titanic-run", True), ("a*", False), ("team/*", False), ("a\nb", False), ("team/../x", False),
     ("team//x", False), ("/team", False), ("$HOME", False), ("x" * 201, False)],
)  # fmt: skip
def test_s3_prefix_is_a_plain_key_prefix(value, fine):
    values = dict(target="sagemaker", s3_bucket="team-bucket", sagemaker_role_arn="arn:aws:iam::123456789012:role/r")
    if fine:
        assert load_settings(repo_root=REPO, s3_prefix=value, **values).s3_prefix == value
    else:
        with pytest.raises(ConfigError, match="S3_PREFIX=.* is malformed"):
            load_settings(repo_root=REPO, s3_prefix=value, **values)


@pytest.mark.parametrize(
    "line, named",
    [("MAX_DEPTH 500\n", "line 2 (key MAX_DEPTH) is not KEY=value"), ('SEED="42\n', "line 2 (key SEED)")],
)
def test_a_malformed_env_line_is_refused_naming_line_and_key(copy, line, named):
    env_file = copy / ".env"
    env_file.write_text("THEME=tabular\n" + line + "PY=3.12\n")
    try:
        one_line_refusal(inv(copy, "deploy", "--dry-run"), f"{env_file} {named}")
    finally:
        env_file.unlink()


def test_a_non_utf8_env_is_one_line_and_doctor_json_is_still_json(copy):
    env_file = copy / ".env"
    env_file.write_bytes(b"THEME=tabular\nTAGS=caf\xe9=1\n")
    try:
        one_line_refusal(inv(copy, "deploy", "--dry-run"), f"{env_file} line 2 is not UTF-8 text")
        report = inv(copy, "doctor", "--json")
        assert report.returncode == 2
        document = json.loads(report.stdout)
        assert document["ok"] is False and "not UTF-8" in document["error"]
    finally:
        env_file.unlink()


@pytest.mark.parametrize(
    "args, option",
    [
        (["clean", "--runs", "--older-than", "abc"], "--older-than 'abc' is not a number"),
        (["clean", "--runs", "--older-than", "nan"], "--older-than 'nan' is not a number"),
        (["doctor", "--threshold", "abc"], "--threshold 'abc' is not a number"),
        (["app", "--port", "abc"], "--port 'abc' is not an integer"),
        (["notebook", "--timeout", "abc"], "--timeout 'abc' is not an integer"),
    ],
)
def test_non_numeric_option_values_are_one_line(copy, args, option):
    one_line_refusal(inv(copy, *args), option)


def test_image_name_is_checked_before_any_build(copy):
    one_line_refusal(inv(copy, "build", IMAGE_NAME="Probe_GS"), "IMAGE_NAME='Probe_GS' is malformed")


def test_a_taken_port_is_refused_before_the_app_image_is_built(copy):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = inv(copy, "app", "--port", str(port))
    one_line_refusal(result, f"port {port} is already in use on 127.0.0.1")
    assert "[image]" not in result.stdout + result.stderr and time.monotonic() - started < 30


def test_make_refuses_a_value_with_a_line_break_in_one_line(copy):
    result = subprocess.run(
        ["make", "deploy", "THEME=a\nb", "DRY_RUN=1"], cwd=copy, capture_output=True, text=True,
        env=tool_env(WORKING_DIR=str(copy.parent / "work")),
    )  # fmt: skip
    assert result.returncode == 2 and "syntax error" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert "THEME contains a line break" in line


def test_a_damaged_manifest_is_listed_without_a_traceback(copy):
    manifest = copy / "themes/tabular/kernel/manifest.env"
    manifest.write_bytes(b'KERNEL_NAME="tabular_312"\nTHEME="tabular"\nSMOKE="caf\xe9 \xff"\n')
    try:
        listed = inv(copy, "kernels")
        assert "Traceback" not in listed.stdout + listed.stderr
        assert listed.stdout.splitlines()[1].startswith("tabular_312") and "venv missing" in listed.stdout
        report = inv(copy, "doctor", "--json")
        assert json.loads(report.stdout)["ok"] is False  # the kernel's venv is missing: a fail, said as JSON
    finally:
        manifest.unlink()


@pytest.mark.parametrize(
    "name, message",
    [("../outside", "job name '../outside' is invalid"), ("never-started", "no readable run record")],
)
def test_attach_reads_only_a_record_under_runs(copy, name, message):
    aws = dict(TARGET="sagemaker", S3_BUCKET="team-bucket", SAGEMAKER_ROLE_ARN="arn:aws:iam::123456789012:role/r")
    one_line_refusal(inv(copy, "job.attach", name, **aws), message)
