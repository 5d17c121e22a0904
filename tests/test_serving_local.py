"""The Titanic model served by its image, locally: `inv serve` answers with the trained model (the validation AUC
recomputed from its answers), bad requests get their status and one line while the server goes on, a batch transform
joins one prediction to each row, a user's handler errors are 500s and SIGTERM drains the request in flight."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import INV, containers_of, free_port, post, started_server, wait_for_line

import docker

pytestmark = [pytest.mark.docker, pytest.mark.slow]


# ---- serving the trained model (`serve` in the image, `inv serve`, `inv predict`) ----------------------------------
def unpacked_model(run_dir: Path, dest: Path) -> Path:
    record = json.loads((run_dir / "run.json").read_text())
    with tarfile.open(record["model_artifact"]) as archive:
        archive.extractall(dest, filter="data")
    return dest


def test_the_served_model_is_the_trained_model(local_deploy):
    """`inv serve --run` serves the run's model in the image it trained in; predicting the validation channel
    through the endpoint gives the run's validation AUC. Ctrl-C leaves no container."""
    project = local_deploy.project
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
    assert containers_of(project) == []


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


def test_a_local_batch_transform_joins_one_prediction_to_each_input_row(local_deploy, tmp_path):
    project = local_deploy.project
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
    assert containers_of(project) == []


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
