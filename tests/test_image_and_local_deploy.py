"""Real Docker: the theme image (contract, layer caching, failed builds) and `inv deploy` in SageMaker local mode."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import signal
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import INV, copy_repo, free_port, post, shared_titanic, started_server, tool_env, wait_for_line

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


@dataclass
class LocalDeploy:
    root: Path
    env: dict
    result: subprocess.CompletedProcess
    run_dir: Path
    containers_before: set


@pytest.fixture(scope="module")
def local_deploy(tmp_path_factory, project, base_image, titanic_csv) -> LocalDeploy:
    """One real `inv deploy` (TARGET=local) in the module's project copy: its checks, then its model served."""
    root = tmp_path_factory.mktemp("local-deploy")
    # AWS keys in the environment must not reach the container or any file (local mode needs none).
    env = tool_env(
        PY="3.11",
        BASE_IMAGE=base_image,
        TITANIC_CSV=str(titanic_csv),
        TARGET="local",
        WORKING_DIR=str(root / "work"),
        JUPYTER_DATA_DIR=str(root / "jupyter"),
        AWS_ACCESS_KEY_ID="AKIASENTINEL0000",
        AWS_SECRET_ACCESS_KEY=SECRET,
    )
    before = set((project / "runs").glob("*")) if (project / "runs").is_dir() else set()
    containers_before = {c.id for c in docker.from_env().containers.list(all=True)}
    result = subprocess.run([INV, "deploy"], cwd=project, env=env, capture_output=True, text=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (run_dir,) = set((project / "runs").glob("*")) - before
    return LocalDeploy(root, env, result, run_dir, containers_before)


def test_local_deploy_end_to_end(local_deploy, project):
    tmp_path, env, result, run_dir = local_deploy.root, local_deploy.env, local_deploy.result, local_deploy.run_dir
    client = docker.from_env()
    containers_before = local_deploy.containers_before
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
    # The same image (same id): its package list is read back from what the first run listed, and the record says so.
    cache = Path(env["WORKING_DIR"]) / "cache/images" / f"{second['image']['image_id'].removeprefix('sha256:')}.json"
    assert second["parity"]["image_packages"] == (
        f"reused: listed at {json.loads(cache.read_text())['listed_at']} ({cache})"
    )
    assert second["parity"]["shared_packages"] == record["parity"]["shared_packages"]
    assert "(the image's packages: reused: listed at" in (second_dir / "report.md").read_text()


# ---- serving the trained model (`serve` in the image, `inv serve`, `inv predict`) ----------------------------------
def unpacked_model(run_dir: Path, dest: Path) -> Path:
    record = json.loads((run_dir / "run.json").read_text())
    with tarfile.open(record["model_artifact"]) as archive:
        archive.extractall(dest, filter="data")
    return dest


def test_the_served_model_is_the_trained_model(local_deploy, project):
    """`inv serve --run` serves the run's model in the image it trained in; predicting the validation channel
    through the endpoint gives the run's validation AUC. Ctrl-C leaves no container."""
    from sklearn.metrics import roc_auc_score

    record = json.loads((local_deploy.run_dir / "run.json").read_text())
    env = {**local_deploy.env, "SERVE_PORT": str(free_port())}
    checked = subprocess.run(
        [INV, "serve", "--run", record["job_name"], "--check"], cwd=project, env=env, capture_output=True, text=True
    )
    assert checked.returncode == 0, (checked.stdout + checked.stderr)[-3000:]
    served = json.loads((local_deploy.run_dir / "serve.json").read_text())
    assert served["image"] == record["image"]["uri"]  # the image the run trained in
    assert served["smoke"]["served_validation_auc"] == record["metrics"]["validation:auc"]
    assert served["smoke"]["single_row_ms"]["requests"] == 50
    assert "the same model" in (local_deploy.run_dir / "serve.md").read_text()

    validation = Path(record["channels"]["validation"].removeprefix("file://")) / "validation.csv"
    server = subprocess.Popen(
        [INV, "serve", "--run", record["job_name"]], cwd=project, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_line(server, "answers on", 180)
        predicted = subprocess.run(
            [INV, "predict", "--input", str(validation), "--accept", "application/json"],
            cwd=project, env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert predicted.returncode == 0, predicted.stderr[-2000:]
        probabilities = json.loads(predicted.stdout)["predictions"]
        with validation.open() as handle:
            labels = [int(row["Survived"]) for row in csv.DictReader(handle)]
        assert len(probabilities) == len(labels) == record["data"]["rows"]["validation"]
        assert round(roc_auc_score(labels, probabilities), 4) == record["metrics"]["validation:auc"]

        bad = project / "bad.json"
        bad.write_text('[{"Pclass": "first", "Sex": "female"}]')
        refused = subprocess.run(
            [INV, "predict", "--input", str(bad)], cwd=project, env=env, capture_output=True, text=True
        )
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert refused.stderr.strip() == "error: the endpoint answered 400: record 1: Pclass: 'first' is not a number"
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=90)[0]
    assert server.returncode == 130 and "stopped: endpoint" in output, output[-2000:]
    assert {c.id for c in docker.from_env().containers.list(all=True)} - local_deploy.containers_before == set()


def test_bad_requests_get_their_status_and_one_line_and_the_server_keeps_serving(local_deploy, tmp_path):
    record = json.loads((local_deploy.run_dir / "run.json").read_text())
    validation = Path(record["channels"]["validation"].removeprefix("file://")) / "validation.csv"
    rows = validation.read_text().splitlines()
    container, port = started_server(
        record["image"]["uri"],
        unpacked_model(local_deploy.run_dir, tmp_path / "model"),
        SAGEMAKER_MODEL_SERVER_WORKERS="1",
    )
    try:
        cases = [
            (b"", "text/csv", None, 400, "the body is empty"),
            (f"{rows[0]}\n1,2,3\n".encode(), "text/csv", None, 400, "CSV row 2 has 3 fields"),
            (b"Pclass,Age\n1,old\n", "text/csv", None, 400, "Age: 'old' is not a number"),
            (b'{"instances": [', "application/json", None, 400, "the body is not JSON"),
            (b"\x93NUMPY", "application/x-npy", None, 415, "content type 'application/x-npy' is not supported"),
            (b"Pclass\n" + b"1\n" * 3_200_000, "text/csv", None, 413, "larger than 6 MB"),
            (b'[{"Pclass": 1}]', "application/json", "image/png", 406, "Accept 'image/png' is not supported"),
        ]
        for body, content_type, accept, status, message in cases:
            answered, text = post(port, body, content_type, accept)
            assert (answered, message) == (status, message) and message in text and text.count("\n") == 1, text
            good, predictions = post(port, "\n".join(rows[:4]).encode(), "text/csv")
            assert good == 200 and len(predictions.split()) == 3  # the next request is answered
        # JSON (missing keys and nulls allowed) and JSON Lines: one probability per record, in order.
        status, answer = post(
            port, b'{"instances": [{"Pclass": 1, "Sex": "female", "Age": null}, {"Pclass": 3}]}', "application/json"
        )
        assert status == 200 and len(json.loads(answer)["predictions"]) == 2
        status, answer = post(
            port, b'{"Pclass": 1, "Sex": "female"}\n{"Pclass": 3, "Sex": "male"}\n', "application/jsonlines"
        )
        first, second = (json.loads(line)["prediction"] for line in answer.splitlines())
        assert status == 200 and first > second  # a first-class woman before a third-class man
        # Requests that arrive together (the one worker predicts those that queued in one call): each answer is
        # its own row's, as when sent alone, and a bad one among them gets its 400 alone.
        bodies = [f"{rows[0]}\n{row}\n".encode() for row in rows[1:25]]
        bodies[7] = f"{rows[0]}\n1,2,3\n".encode()
        alone = [post(port, body, "text/csv") for body in bodies]
        together: list = [None] * len(bodies)

        def send(i: int) -> None:
            together[i] = post(port, bodies[i], "text/csv")

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert together[7][0] == alone[7][0] == 400 and "CSV row 2 has 3 fields" in together[7][1]
        for (status, text), (expected_status, expected) in [
            (t, a) for i, (t, a) in enumerate(zip(together, alone, strict=True)) if i != 7
        ]:
            assert status == expected_status == 200 and float(text) == pytest.approx(float(expected), rel=1e-12, abs=0)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/execution-parameters") as response:
            assert json.load(response) == {
                "MaxConcurrentTransforms": 1,
                "BatchStrategy": "MULTI_RECORD",
                "MaxPayloadInMB": 6,
            }
    finally:
        container.remove(force=True)

    # A model that cannot load: the container exits 1 with one line, never answers.
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{empty}:/opt/ml/model:ro", record["image"]["uri"], "serve"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert (
        failed.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "serve: cannot start: nothing in /opt/ml/model can be served (found: nothing): needed a handler with model_fn"
        )
    )


def test_a_local_batch_transform_joins_one_prediction_to_each_input_row(local_deploy, project, tmp_path):
    from sklearn.metrics import roc_auc_score

    record = json.loads((local_deploy.run_dir / "run.json").read_text())
    validation = Path(record["channels"]["validation"].removeprefix("file://")) / "validation.csv"
    env = {**local_deploy.env, "SERVE_PORT": str(free_port())}
    done = subprocess.run(
        [INV, "transform", "--input", str(validation), "--run", record["job_name"], "--output", str(tmp_path / "out")],
        cwd=project, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    rows = validation.read_text().splitlines()
    joined = (tmp_path / "out/validation.csv").read_text().splitlines()
    assert joined[0] == rows[0] + ",prediction" and len(joined) == len(rows)
    for original, line in zip(rows[1:], joined[1:], strict=True):
        assert line.startswith(original + ",")  # the row as it was (its PassengerId first), then its prediction
    with (tmp_path / "out/validation.csv").open() as handle:
        table = list(csv.DictReader(handle))
    labels, scores = [int(r["Survived"]) for r in table], [float(r["prediction"]) for r in table]
    assert round(roc_auc_score(labels, scores), 4) == record["metrics"]["validation:auc"]
    assert json.loads((tmp_path / "out/transform.json").read_text())["rows"] == {"validation.csv": len(rows) - 1}

    # A row the model cannot take: the transform fails with the server's own line and writes nothing.
    broken = tmp_path / "broken/validation.csv"
    broken.parent.mkdir()
    header, first, *rest = rows
    fields = next(csv.reader([first]))
    fields[header.split(",").index("Age")] = "old"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)
    broken.write_text("\n".join([header, out.getvalue().rstrip("\n"), *rest]) + "\n")
    failed = subprocess.run(
        [INV, "transform", "--input", str(broken), "--run", record["job_name"], "--output", str(tmp_path / "out2")],
        cwd=project, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr[-2000:]
    assert (
        f"1 answer line(s) for {len(rows) - 1} rows" in failed.stderr and "Age: 'old' is not a number" in failed.stderr
    )
    assert not (tmp_path / "out2/validation.csv").exists()
    assert {c.id for c in docker.from_env().containers.list(all=True)} - local_deploy.containers_before == set()


SLOW_HANDLER = """
import time

def model_fn(model_dir):
    return "slow"

def predict_fn(data, model):
    if data[0][0] < 0:
        raise RuntimeError("negative input")
    time.sleep(float(data[0][0]))
    return [float(data[0][0])]
"""


def test_user_handler_errors_are_500_and_sigterm_drains_in_flight_requests(local_deploy, tmp_path):
    """A user's inference.py in the model's code/ folder wins over the image's built-in model. A prediction that
    raises is a 500 and the server goes on; SIGTERM lets the request in flight finish and the server exits."""
    record = json.loads((local_deploy.run_dir / "run.json").read_text())
    (tmp_path / "model/code").mkdir(parents=True)
    (tmp_path / "model/code/inference.py").write_text(SLOW_HANDLER)
    container, port = started_server(record["image"]["uri"], tmp_path / "model", SAGEMAKER_MODEL_SERVER_WORKERS="2")
    try:
        assert post(port, b"-1", "text/csv") == (500, "RuntimeError: negative input\n")
        assert post(port, b"0", "text/csv") == (200, "0.0\n")
        slow: dict = {}
        request = threading.Thread(target=lambda: slow.update(answer=post(port, b"6", "text/csv")))
        request.start()
        time.sleep(1.5)
        signalled = time.monotonic()
        container.kill(signal="SIGTERM")
        exit_code = container.wait(timeout=30)["StatusCode"]
        stopped_after = time.monotonic() - signalled
        request.join(timeout=30)
        assert slow["answer"] == (200, "6.0\n")  # the request in flight completed
        assert exit_code == 0 and stopped_after < 30
    finally:
        container.remove(force=True)

    # SageMaker's other variables: the port it binds to (the image says it accepts one) and the request timeout.
    assert (
        docker.from_env()
        .images.get(record["image"]["uri"])
        .labels["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"]
        == "true"
    )
    container, port = started_server(
        record["image"]["uri"], tmp_path / "model", container_port=9091,
        SAGEMAKER_BIND_TO_PORT="9091", SAGEMAKER_MODEL_SERVER_TIMEOUT="1", SAGEMAKER_MODEL_SERVER_WORKERS="1",
    )  # fmt: skip
    try:
        assert post(port, b"3", "text/csv") == (
            504,
            "the prediction took longer than SAGEMAKER_MODEL_SERVER_TIMEOUT=1 s\n",
        )
        time.sleep(2.5)  # the prediction past its timeout still runs to its end; then the worker takes the next
        assert post(port, b"0", "text/csv") == (200, "0.0\n")
    finally:
        container.remove(force=True)


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


def test_an_image_package_list_is_made_once_per_image_id_and_a_damaged_one_is_made_again(local_deploy, tmp_path):
    """Parity's image side on a warm run: the packages of an image (named by its id, i.e. its content) are listed in
    a container once, then read back; what cannot be read is listed again."""
    from gs_ds_env.kernel import parity

    image = json.loads((local_deploy.run_dir / "run.json").read_text())["image"]["uri"]
    cache = tmp_path / "cache/images/some-id.json"
    first = parity.image_environment_once(image, cache)
    assert first.origin == "listed now" and first.packages == parity.image_environment(image).packages
    again = parity.image_environment_once(image, cache)
    assert again.origin.startswith("reused: listed at ") and again.origin.endswith(f"({cache})")
    assert (again.python, again.packages) == (first.python, first.packages)
    cache.write_text('{"python": "3.11.1"')  # cut short
    assert parity.image_environment_once(image, cache).origin == "listed now"
    assert json.loads(cache.read_text())["packages"] == first.packages


# ---- the workspace image (JupyterLab, the theme's kernel; SageMaker Studio's rules) and `inv lab` -----------------
def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def wait_until_answers(url: str, container=None, seconds: float = 90) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            return get_json(url)
        except (urllib.error.URLError, OSError, ValueError):
            if container is not None:
                container.reload()
                assert container.status in ("created", "running"), container.logs().decode()[-2000:]
            time.sleep(0.5)
    raise AssertionError(f"{url} never answered")


def execute_through_server(base: str, kernel_name: str, code: str, token: str = "") -> str:
    """Start `kernel_name` through the Jupyter server's REST API and run `code` over its websocket (the kernel
    messaging protocol, as JupyterLab does): what it printed, or the error it raised."""
    import asyncio
    import http.cookiejar

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    query = f"?token={token}" if token else ""
    # Without a token (Studio's way: its proxy authenticates) the server wants its XSRF cookie echoed on a POST, as
    # the JupyterLab page does.
    cookies = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    opener.open(f"{base}/lab{query}", timeout=30).read()
    xsrf = next((cookie.value for cookie in cookies if cookie.name == "_xsrf"), "")
    cookie_header = "; ".join(f"{cookie.name}={cookie.value}" for cookie in cookies)
    request = urllib.request.Request(
        f"{base}/api/kernels{query}",
        data=json.dumps({"name": kernel_name}).encode(),
        headers={"Content-Type": "application/json", "X-XSRFToken": xsrf},
        method="POST",
    )
    with opener.open(request, timeout=30) as response:
        kernel = json.load(response)

    async def run() -> str:
        socket = await websocket_connect(
            HTTPRequest(
                f"{base.replace('http', 'ws', 1)}/api/kernels/{kernel['id']}/channels{query}",
                headers={"Cookie": cookie_header},
            )
        )
        msg_id, printed, replied, idle = uuid.uuid4().hex, [], False, False
        header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": uuid.uuid4().hex}
        await socket.write_message(
            json.dumps(
                {
                    "header": {**header, "date": "", "version": "5.3"},
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False, "store_history": False, "allow_stdin": False},
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        while not (replied and idle):
            message = json.loads(await asyncio.wait_for(socket.read_message(), 120))
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = message["msg_type"]
            if kind == "stream":
                printed.append(message["content"]["text"])
            elif kind == "error":
                printed.append(f"ERROR {message['content']['ename']}: {message['content']['evalue']}")
            replied = replied or kind == "execute_reply"
            idle = idle or (kind == "status" and message["content"]["execution_state"] == "idle")
        socket.close()
        return "".join(printed)

    return asyncio.run(run())


def test_the_workspace_image_runs_as_studio_runs_it_and_its_kernel_is_the_training_env(local_deploy, project):
    """The workspace variant, run the way SageMaker Studio runs a custom JupyterLab image (its default user, port 8888,
    base URL /jupyterlab/default, no token: Studio's proxy authenticates): the server offers exactly the theme's
    kernel, which starts through the server and runs the training image's env; parity with the notebook kernel."""
    built = subprocess.run(
        [INV, "build", "--workspace"], cwd=project, env=local_deploy.env, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stdout + built.stderr
    image = built.stdout.split("image: ", 1)[1].split()[0]
    assert image.startswith("gs-ds-env:tabular_311-workspace-")
    client = docker.from_env()
    config = client.images.get(image).attrs["Config"]
    assert config["User"] == "1000:100" and config["WorkingDir"] == "/home/sagemaker-user"
    facts = client.containers.run(
        image, ["sh", "-c", "id -u; id -g; echo $HOME; test -e /opt/ml && echo has-opt-ml || echo no-opt-ml"],
        remove=True,
    ).decode().split()  # fmt: skip
    assert facts == ["1000", "100", "/home/sagemaker-user", "no-opt-ml"]

    container = client.containers.run(image, detach=True, ports={"8888/tcp": ("127.0.0.1", None)})
    try:
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["8888/tcp"][0]["HostPort"])
        base = f"http://127.0.0.1:{port}/jupyterlab/default"
        assert "started" in wait_until_answers(f"{base}/api/status", container)
        specs = get_json(f"{base}/api/kernelspecs")
        assert specs["default"] == "tabular_311" and set(specs["kernelspecs"]) == {"tabular_311"}
        assert specs["kernelspecs"]["tabular_311"]["spec"]["argv"][0] == "/opt/venv/bin/python"
        kernel_python = project / "themes/tabular/kernel/.venv/bin/python"
        versions = (
            "import pandas, sklearn, xgboost; print(pandas.__version__, sklearn.__version__, xgboost.__version__)"
        )
        expected = subprocess.run([str(kernel_python), "-c", versions], capture_output=True, text=True).stdout
        printed = execute_through_server(base, "tabular_311", f"import sys; print(sys.executable)\n{versions}")
        assert printed.splitlines() == ["/opt/venv/bin/python", expected.strip()], printed
    finally:
        container.remove(force=True)

    parity = subprocess.run(
        [INV, "parity", "--workspace"], cwd=project, env=local_deploy.env, capture_output=True, text=True
    )
    assert parity.returncode == 0, parity.stdout + parity.stderr
    assert re.search(
        r"and image gs-ds-env:tabular_311-workspace-\w+: \d+ shared packages, 0 differences", parity.stdout
    )


def test_inv_lab_answers_with_its_token_on_127_0_0_1_and_ctrl_c_leaves_no_container(local_deploy, project, tmp_path):
    folder = tmp_path / "my-notebooks"
    folder.mkdir()
    (folder / "hello.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    port = free_port()
    lab = subprocess.Popen(
        [INV, "lab", "--port", str(port), "--folder", str(folder)],
        cwd=project, env=local_deploy.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        seen = wait_for_line(lab, "lab: http://127.0.0.1:", 240)
        url = next(line for line in seen.splitlines() if line.startswith("lab: ")).split()[1]
        token = url.split("token=", 1)[1]
        assert url == f"http://127.0.0.1:{port}/lab?token={token}" and len(token) >= 32
        listing = get_json(f"http://127.0.0.1:{port}/api/contents/my-notebooks?token={token}")
        assert [item["name"] for item in listing["content"]] == ["hello.ipynb"]  # the folder is mounted
        with pytest.raises(urllib.error.HTTPError) as refused:
            get_json(f"http://127.0.0.1:{port}/api/contents/my-notebooks")
        assert refused.value.code == 403  # no token, no access
        assert docker.from_env().containers.list(filters={"label": "gs-ds-env.lab=tabular"})
    finally:
        lab.send_signal(signal.SIGINT)
        lab.wait(60)
    assert lab.returncode != 0
    leftovers = docker.from_env().containers.list(all=True, filters={"label": "gs-ds-env.lab=tabular"})
    assert leftovers == [], [c.name for c in leftovers]


def test_inv_devcontainer_writes_a_file_the_dev_containers_cli_opens_in_the_workspace_image(
    local_deploy, project, tmp_path, devcontainer_cli
):
    """The file names the workspace image by its content tag (the image exists), and the Dev Containers reference CLI
    (what VS Code runs) brings the folder up in it: the interpreter is the training env with the kernel's versions,
    the folder is mounted, the AWS config read-only. Re-running changes nothing; a hand-edited file is kept."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws/config").write_text("[default]\nregion = eu-west-1\n")
    folder = tmp_path / "my-analysis"
    folder.mkdir()
    (folder / "explore.py").write_text("print('mine')\n")
    env = {**local_deploy.env, "HOME": str(home)}

    def devcontainer():
        result = subprocess.run([INV, "devcontainer", "--folder", str(folder)], cwd=project, env=env, capture_output=True, text=True)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    assert "devcontainer.json written" in devcontainer()
    path = folder / ".devcontainer/tabular/devcontainer.json"
    config = json.loads(path.read_text())
    built = subprocess.run([INV, "build", "--workspace"], cwd=project, env=env, capture_output=True, text=True)
    assert config["image"] == built.stdout.split("image: ", 1)[1].split()[0]
    assert re.fullmatch(r"gs-ds-env:tabular_311-workspace-[0-9a-f]{12}", config["image"])
    docker.from_env().images.get(config["image"])  # the image it names exists
    assert config["remoteUser"] == "sagemaker-user" and config["overrideCommand"] is True
    assert config["customizations"]["vscode"]["settings"]["python.defaultInterpreterPath"] == "/opt/venv/bin/python"
    assert set(config["customizations"]["vscode"]["extensions"]) == {"ms-python.python", "ms-toolsai.jupyter"}
    assert config["mounts"] == ["source=${localEnv:HOME}/.aws,target=/home/sagemaker-user/.aws,type=bind,readonly"]

    written_at = path.stat().st_mtime_ns
    assert "up to date" in devcontainer() and path.stat().st_mtime_ns == written_at
    edited = path.read_text().replace('"overrideCommand": true', '"overrideCommand": false')
    path.write_text(edited)
    assert "kept as devcontainer.json.previous" in devcontainer()
    assert (path.parent / "devcontainer.json.previous").read_text() == edited and json.loads(path.read_text()) == config

    cli = [str(devcontainer_cli), "--workspace-folder", str(folder), "--config", str(path)]
    try:
        up = subprocess.run([cli[0], "up", *cli[1:]], env=env, capture_output=True, text=True, timeout=600)
        assert '"outcome":"success"' in up.stdout, (up.stdout + up.stderr)[-3000:]
        versions = (
            "import pandas, sklearn, xgboost; print(pandas.__version__, sklearn.__version__, xgboost.__version__)"
        )
        kernel = subprocess.run(
            [str(project / "themes/tabular/kernel/.venv/bin/python"), "-c", versions], capture_output=True, text=True
        ).stdout.strip()
        inside = subprocess.run(
            [cli[0], "exec", *cli[1:], "sh", "-c",
             f"id -u; pwd; python -c 'import sys, ipykernel; print(sys.executable)'; python -c '{versions}'; "
             "cat explore.py ~/.aws/config; touch ~/.aws/mine 2>&1 || true"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        lines = inside.stdout.strip().splitlines()
        assert lines[:5] == [
            "1000",
            "/home/sagemaker-user/my-analysis",
            "/opt/venv/bin/python",
            kernel,
            "print('mine')",
        ]
        assert lines[5:7] == ["[default]", "region = eu-west-1"] and "Read-only file system" in lines[7], lines
    finally:
        client = docker.from_env()
        for container in client.containers.list(all=True, filters={"label": f"devcontainer.local_folder={folder}"}):
            uid_layer = [tag for tag in container.image.tags if tag.startswith("vsc-")]  # the CLI's, not ours
            container.remove(force=True)
            for tag in uid_layer:
                with contextlib.suppress(docker.errors.APIError):  # still used by another folder's dev container
                    client.images.remove(tag)
