"""`inv deploy` in SageMaker local mode, for real: kernel, image, parity, data, the job and its record end to end; a
failing local job is one line with its reason; Ctrl-C stops the container and marks the run interrupted."""

from __future__ import annotations

import json
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from conftest import INV, SECRET, containers_of, run_image, shared_titanic, tool_env

import docker

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_local_deploy_end_to_end(local_deploy):
    project = local_deploy.project
    tmp_path, env, result, run_dir = local_deploy.root, local_deploy.env, local_deploy.result, local_deploy.run_dir
    before = set((project / "runs").glob("*")) - {run_dir}

    record = json.loads((run_dir / "run.json").read_text())
    assert record["target"] == "local" and record["kernel"] == "tabular_311"
    assert record["image"]["uri"].startswith("gs-ds-env:tabular_311-") and record["image"]["size_bytes"] > 0
    assert set(record["channels"]) == {"train", "validation"}
    assert record["hyperparameters"]["model"] == "blend"
    assert record["data"]["sha256"] == "4a437fde05fe5264e1701a7387ac6fb75393772ba38bb2c9c566405af5af4bd7"
    assert record["metrics"]["validation:auc"] >= 0.85
    # Every step of the run is timed, from the process's start to the record (the total is accounted for).
    assert list(record["timings"]) == [
        "start-up (inv, imports, settings)",
        "kernel",
        "build",
        "parity",
        "data",
        "train",
        "pictures (from output.tar.gz)",
        "train: SageMaker SDK (import, local session)",
        "train: local-mode job (docker-compose, container)",
        "train: outputs (containers removed, model, metrics)",
        "training computation (in container)",
        "run record (versions, report)",
    ]
    parts = [seconds for step, seconds in record["timings"].items() if step.startswith("train: ")]
    assert sum(parts) <= record["timings"]["train"] + 0.05 and min(parts) >= 0
    assert record["parity"]["image_packages"] == "listed now"

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
    assert containers_of(project) == []
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
    # The same image (same id): its package list is read back from what the first run listed, and the record says so.
    cache = Path(env["WORKING_DIR"]) / "cache/images" / f"{second['image']['image_id'].removeprefix('sha256:')}.json"
    assert second["parity"]["image_packages"] == (
        f"reused: listed at {json.loads(cache.read_text())['listed_at']} ({cache})"
    )
    assert second["parity"]["shared_packages"] == record["parity"]["shared_packages"]
    assert "(the image's packages: reused: listed at" in (second_dir / "report.md").read_text()


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
from gs_ds_env import data
from gs_ds_env.job import local_job
from gs_ds_env.settings import load_settings

settings = load_settings(repo_root=Path(sys.argv[1]), py="3.11", model=sys.argv[4])
staged = data.split_and_stage(settings)
try:
    tasks.clear_errors(local_job.train_local)(settings, sys.argv[2], staged.channels, sys.argv[3])
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
    tag = f"{run_image('stub')}:test"
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


def stub_containers(image: str, running_only: bool = False) -> set[str]:
    """The containers of the stub image (not the machine's others: another test may start and remove its own)."""
    listed = docker.from_env().containers.list(all=not running_only, filters={"ancestor": image}, ignore_removed=True)
    return {container.id for container in listed}


def test_a_failing_local_job_is_one_line_and_leaves_no_container(project, stub_image):
    before = stub_containers(stub_image)
    process = run_local(project, stub_image, "stub-failure-1")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, out + err
    log = project / "runs/stub-failure-1/job.log"
    assert err.strip().splitlines()[-1] == (
        f"error: local training job stub-failure-1 failed: channel train: stub failure for the test (log: {log})"
    )
    assert "Traceback" not in err and log.is_file()  # the job log is kept beside the failed run
    assert stub_containers(stub_image) - before == set()
    assert not (project / "runs/stub-failure-1/container").exists()


def test_ctrl_c_stops_the_container_and_marks_the_run_interrupted(project, stub_image):
    import os

    before = stub_containers(stub_image)
    process = run_local(project, stub_image, "stub-sleep-1", start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (stub_containers(stub_image, running_only=True) - before):
        time.sleep(0.5)
    assert stub_containers(stub_image, running_only=True) - before, "the stub container never started"
    time.sleep(1)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    assert err.strip().splitlines()[-1].startswith("error: interrupted (Ctrl-C)")
    assert (project / "runs/stub-sleep-1/INTERRUPTED").is_file()
    assert stub_containers(stub_image) - before == set()
