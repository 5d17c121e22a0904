"""Real Docker: the theme image (contract, layer caching, failed builds) and `inv deploy` in SageMaker local mode."""

from __future__ import annotations

import json
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest
from conftest import INV, copy_repo, shared_titanic, tool_env

import docker

pytestmark = [pytest.mark.docker, pytest.mark.slow]
REPOSITORY = "gs-ds-env-test"


def build(repo: Path, base_image: str, *extra: str, py: str = "3.11"):
    return subprocess.run(
        [
            str(repo / "bin/gs-env-docker-build-push.sh"),
            "--no-push",
            "--py",
            py,
            "--base-image",
            base_image,
            *extra,
            "tabular",
            "-",
            "-",
            REPOSITORY,
            "tabular_311",
        ],
        capture_output=True,
        text=True,
        env=tool_env(),
    )


def outputs(result) -> dict[str, str]:
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def test_image_contract_layers_and_failed_builds(tmp_path, base_image):
    repo = copy_repo(tmp_path / "repo", "bin", "docker", "training", "themes", ".dockerignore")
    client = docker.from_env()
    program = repo / "training/titanic/__init__.py"

    # Inputs never built before, so this build really runs and leaves its stages' layers for the cache check below
    # (an image with these inputs left by an earlier run would make it "up to date" even after its build stages
    # were pruned as dangling images, and the cache check would then test nothing but that prune).
    program.write_text(f"{program.read_text()}# first {uuid.uuid4()}\n")
    first = build(repo, base_image)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "building" in first.stderr
    image = client.images.get(f"{REPOSITORY}:tabular_311")
    assert image.labels["gs-ds-env.content-tag"] == outputs(first)["CONTENT_TAG"]
    assert image.attrs["Config"]["Env"] and "PYTHONUNBUFFERED=1" in image.attrs["Config"]["Env"]

    # SageMaker runs `docker run IMAGE train`: `train` is on PATH; with no channels it fails and says why.
    run = subprocess.run(
        ["docker", "run", "--rm", f"{REPOSITORY}:tabular_311", "train"], capture_output=True, text=True
    )
    assert run.returncode == 1
    assert "channel 'train' is empty or missing" in run.stderr

    # Nothing changed: no rebuild. training/ changed: only the last layer is rebuilt (pip layer from cache).
    same = build(repo, base_image)
    assert "is up to date" in same.stderr and outputs(same)["CONTENT_TAG"] == outputs(first)["CONTENT_TAG"]
    # A change never seen before (earlier runs on this machine may have built other edits already).
    program.write_text(f'"""changed {uuid.uuid4()}"""\n')
    changed = build(repo, base_image)
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert outputs(changed)["CONTENT_TAG"] != outputs(first)["CONTENT_TAG"]
    # The dependency step (uv under the lock) and the smoke test come from the layer cache.
    install_step = changed.stderr.split("INSTALLER", 1)[1].split("Step", 1)[0]
    assert "Using cache" in install_step
    smoke_step = changed.stderr.split("smoke.py &&", 1)[1].split("Step", 1)[0]
    assert "Using cache" in smoke_step
    good_id = client.images.get(f"{REPOSITORY}:tabular_311").id

    # A failing build (unresolvable requirement, or the wrong Python) leaves the last good image tagged.
    requirements = repo / "themes/tabular/docker/requirements.txt"
    requirements.write_text(requirements.read_text() + "this-package-does-not-exist-gs-ds-env==9.9.9\n")
    failed = build(repo, base_image)
    assert failed.returncode != 0
    assert client.images.get(f"{REPOSITORY}:tabular_311").id == good_id
    wrong_python = build(repo, base_image, py="3.12")
    assert wrong_python.returncode != 0
    assert "expected 3.12: pass a matching BASE_IMAGE or PY" in wrong_python.stderr + wrong_python.stdout


SECRET = f"sentinel-secret-{uuid.uuid4().hex}"


def test_local_deploy_end_to_end(tmp_path, project, base_image, titanic_csv):
    # AWS keys in the environment must not reach the container or any file (local mode needs none).
    env = tool_env(
        PY="3.11",
        BASE_IMAGE=base_image,
        TITANIC_CSV=str(titanic_csv),
        TARGET="local",
        WORKING_DIR=str(tmp_path / "work"),
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter"),
        AWS_ACCESS_KEY_ID="AKIASENTINEL0000",
        AWS_SECRET_ACCESS_KEY=SECRET,
    )
    before = set((project / "runs").glob("*")) if (project / "runs").is_dir() else set()
    client = docker.from_env()
    containers_before = {c.id for c in client.containers.list(all=True)}
    result = subprocess.run([INV, "deploy"], cwd=project, env=env, capture_output=True, text=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (run_dir,) = set((project / "runs").glob("*")) - before

    record = json.loads((run_dir / "run.json").read_text())
    assert record["target"] == "local" and record["kernel"] == "tabular_311"
    assert record["image"]["uri"].startswith("gs-ds-env:tabular_311-") and record["image"]["size_bytes"] > 0
    assert set(record["channels"]) == {"train", "validation"}
    assert record["hyperparameters"]["model"] == "blend"
    assert record["data"]["sha256"] == "4a437fde05fe5264e1701a7387ac6fb75393772ba38bb2c9c566405af5af4bd7"
    assert record["metrics"]["validation:auc"] >= 0.85
    assert set(record["timings"]) >= {"kernel", "build", "parity", "data", "train"}

    artifact = Path(record["model_artifact"])
    assert artifact.parent == run_dir and artifact.name == "model.tar.gz"
    with tarfile.open(artifact) as archive:
        names = set(archive.getnames())
        assert {"model.joblib", "metrics.json"} <= names
        metrics = json.load(archive.extractfile("metrics.json"))
    assert metrics["metrics"] == record["metrics"]
    # The training logs streamed through (metric lines as SageMaker would parse them).
    assert "validation:auc=" in result.stdout

    report = (run_dir / "report.md").read_text()
    for heading in ("## Summary", "## Flow", "## Resources", "## Hyperparameters", "## Metrics", "## Reproduce"):
        assert heading in report
    assert record["job_name"] in report and str(artifact) in report
    # The pictures from output.tar.gz sit next to the report, shown in it.
    assert record["pictures"] == ["confusion_matrix.png", "roc_curve.png"]
    for name in record["pictures"]:
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({name})" in report

    # The kernel step really built the kernel the image claims to match.
    assert (tmp_path / "jupyter/kernels/tabular_311/kernel.json").is_file()

    # Each channel's sha256 and rows are recorded, and match the staged files.
    from gs_ds_env.data import sha256_of

    for channel, entry in record["data"]["channels"].items():
        staged_file = Path(record["channels"][channel].removeprefix("file://")) / f"{channel}.csv"
        assert sha256_of(staged_file) == entry["sha256"] and entry["rows"] == record["data"]["rows"][channel]

    # Nothing left behind: no container of this image (running or exited), no scratch compose files, no secret.
    assert {c.id for c in client.containers.list(all=True)} - containers_before == set()
    assert not (run_dir / "container").exists()
    leaked = subprocess.run(
        ["grep", "-rl", SECRET, str(project / "runs"), str(project / "data")], capture_output=True, text=True
    )
    assert leaked.returncode == 1 and not leaked.stdout, leaked.stdout

    # A staged file changed after staging is staged again from the verified source, never trained on.
    train_csv = Path(record["channels"]["train"].removeprefix("file://")) / "train.csv"
    train_csv.write_text("".join(train_csv.read_text().splitlines(keepends=True)[:41]))
    again = subprocess.run([INV, "deploy"], cwd=project, env=env, capture_output=True, text=True)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert "is not the file staged from the verified source" in again.stdout
    (second_dir,) = set((project / "runs").glob("*")) - before - {run_dir}
    second = json.loads((second_dir / "run.json").read_text())
    assert second["data"]["rows"] == record["data"]["rows"] and second["data"]["channels"] == record["data"]["channels"]
    assert second["metrics"] == record["metrics"]


STUB_TRAIN = """#!/bin/sh
# A stand-in training program: a job named *sleep* runs until stopped; any other fails with a reason.
case "$TRAINING_JOB_NAME" in
  *sleep*) echo "stub: running until stopped"; sleep 120 ;;
esac
echo "channel train: stub failure for the test" > /opt/ml/output/failure
exit 3
"""

RUN_LOCAL = """
import sys
from pathlib import Path

from invoke import Exit

import tasks
from gs_ds_env import data, training_job
from gs_ds_env.settings import load_settings

settings = load_settings(repo_root=Path(sys.argv[1]), py="3.11", model=sys.argv[4])
staged = data.split_and_stage(settings)
try:
    tasks.clear_errors(training_job.train_local)(settings, sys.argv[2], staged.channels, sys.argv[3])
except Exit as stopped:
    print(stopped.message, file=sys.stderr)
    sys.exit(stopped.code)
"""


@pytest.fixture(scope="module")
def stub_image(tmp_path_factory, base_image):
    context = tmp_path_factory.mktemp("stub-image")
    (context / "train").write_text(STUB_TRAIN)
    (context / "Dockerfile").write_text(
        f"FROM {base_image}\nCOPY train /usr/local/bin/train\nRUN chmod +x /usr/local/bin/train\n"
    )
    tag = "gs-ds-env-stub:test"
    docker.from_env().images.build(path=str(context), tag=tag, rm=True)
    return tag


def run_local(project: Path, image: str, job: str, model: str = "blend", **popen):
    return subprocess.Popen(
        [str(Path(INV).parent / "python"), "-c", RUN_LOCAL, str(project), image, job, model],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=tool_env(TITANIC_CSV=str(shared_titanic())),
        **popen,
    )


def test_a_failing_local_job_is_one_line_and_leaves_no_container(project, stub_image):
    client = docker.from_env()
    before = {c.id for c in client.containers.list(all=True)}
    process = run_local(project, stub_image, "stub-failure-1")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, out + err
    log = project / "runs/stub-failure-1/job.log"
    assert err.strip().splitlines()[-1] == (
        f"error: local training job stub-failure-1 failed: channel train: stub failure for the test (log: {log})"
    )
    assert "Traceback" not in err and log.is_file()  # the job log is kept beside the failed run
    assert {c.id for c in client.containers.list(all=True)} - before == set()
    assert not (project / "runs/stub-failure-1/container").exists()


def test_ctrl_c_stops_the_container_and_marks_the_run_interrupted(project, stub_image):
    import os
    import signal
    import time

    client = docker.from_env()
    before = {c.id for c in client.containers.list(all=True)}
    process = run_local(project, stub_image, "stub-sleep-1", start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ({c.id for c in client.containers.list()} - before):
        time.sleep(0.5)
    assert {c.id for c in client.containers.list()} - before, "the stub container never started"
    time.sleep(1)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    assert err.strip().splitlines()[-1].startswith("error: interrupted (Ctrl-C)")
    assert (project / "runs/stub-sleep-1/INTERRUPTED").is_file()
    assert {c.id for c in client.containers.list(all=True)} - before == set()
