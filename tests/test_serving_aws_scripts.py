"""Code written for AWS's own framework containers, unchanged (tests/aws_style/: handlers in the training script,
model_fn only, a Booster, a dependency folder, an entry point in a subfolder), trained and served here in the
tabular image as `estimator.deploy()` would serve it, and answering the SageMaker SDK's own Predictor classes
through its LocalSession; a header-less batch keeps every row; an endpoint on SageMaker gets the code in its
model archive (moto). Real containers (the tabular image the earlier modules built)."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import INV, free_port, tool_env, wait_for_line

import docker

pytestmark = [pytest.mark.docker, pytest.mark.slow]
AWS_STYLE = Path(__file__).parent / "aws_style"


@dataclass
class Trained:
    root: Path
    env: dict
    runs: dict  # name -> run.json as a dict
    data: dict  # name -> the numbers trained on


def inv(project: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([INV, *map(str, args)], cwd=project, env=env, capture_output=True, text=True)


def train(project: Path, env: dict, *args) -> dict:
    before = set((project / "runs").glob("*/run.json"))
    job = inv(project, env, "train", "--theme", "tabular", *args)
    assert job.returncode == 0, (job.stdout + job.stderr)[-4000:]
    (run_json,) = set((project / "runs").glob("*/run.json")) - before
    return json.loads(run_json.read_text())


def model_file(record: dict, name: str, destination: Path) -> Path:
    with tarfile.open(record["model_artifact"]) as archive:
        archive.extract(name, destination, filter="data")
    return destination / name


@pytest.fixture(scope="module")
def trained(project, tmp_path_factory, base_image) -> Trained:
    """Three scripts trained as a user copies them from AWS's examples: into a folder of their own, as they are."""
    from sklearn.datasets import load_iris

    root = tmp_path_factory.mktemp("aws-style")
    scripts = shutil.copytree(AWS_STYLE, root / "scripts")
    iris = load_iris()
    (root / "iris").mkdir()
    np.savetxt(root / "iris/iris.csv", np.column_stack([iris.target, iris.data]), delimiter=",", fmt="%g")
    rng = np.random.default_rng(7)
    features = rng.random((200, 3))
    rows = np.column_stack([features @ [3.0, -2.0, 1.0] + rng.normal(0, 0.05, 200), features])
    for split, part in (("train", rows[:150]), ("validation", rows[150:])):
        (root / split).mkdir()
        np.savetxt(root / split / f"{split}.csv", part, delimiter=",", fmt="%.6f")
    env = tool_env(
        PY="3.11", BASE_IMAGE=base_image, TARGET="local", WORKING_DIR=str(root / "work"),
        JUPYTER_DATA_DIR=str(root / "jupyter"), SERVE_PORT=str(free_port()),
    )  # fmt: skip
    runs = {
        "iris": train(project, env, "--entry-point", scripts / "sklearn_iris/train.py", "--channel",
                      f"train={root / 'iris'}", "--hyperparameter", "max_leaf_nodes=10"),
        "booster": train(project, env, "--entry-point", scripts / "xgboost_booster/train.py", "--channel",
                         f"train={root / 'train'}", "--channel", f"validation={root / 'validation'}",
                         "--hyperparameter", "num_round=8"),
        "layered": train(project, env, "--entry-point", scripts / "layered/src/sub/train.py", "--source-dir",
                         scripts / "layered/src", "--dependency", scripts / "layered/lib/helpers",
                         "--channel", f"unused={root / 'iris'}"),
    }  # fmt: skip
    return Trained(root, env, runs, {"iris": iris.data, "booster": features})


def test_scripts_written_for_aws_train_unchanged_keep_their_code_and_their_framework_metrics(trained, project):
    layered, booster, iris = trained.runs["layered"], trained.runs["booster"], trained.runs["iris"]
    # An entry point in a subfolder of its source dir runs (local mode passed only its file name before), with its
    # dependency beside it: the copy the job ran is kept with the run.
    assert layered["entry_point"] == "sub/train.py" and layered["metrics"]["train:r2"] == 1.0
    assert layered["dependencies"] == [str(trained.root / "scripts/layered/lib/helpers")]
    code = Path(layered["code"])
    assert (code / "sub/train.py").is_file() and (code / "helpers/__init__.py").is_file()
    assert code.parent == project / "runs" / layered["job_name"]
    # XGBoost's own eval lines are metrics without any --metric-definition, under SageMaker's names.
    assert {"train:rmse", "validation:rmse"} <= set(booster["metrics"]) and booster["metrics"]["validation:rmse"] < 1
    assert any("-rmse:" in d["Regex"] for d in booster["metric_definitions"] if d["Name"] == "validation:rmse")
    assert (Path(iris["code"]) / "train.py").read_text() == (AWS_STYLE / "sklearn_iris/train.py").read_text()


def test_a_script_runs_model_is_served_by_its_training_script_and_answers_the_sdks_own_predictors(
    trained, project, tmp_path
):
    import boto3

    from gs_ds_env.sdk import sagemaker

    sagemaker()  # the SDK, quiet, as the project imports it
    from sagemaker.base_deserializers import JSONDeserializer, NumpyDeserializer
    from sagemaker.base_serializers import CSVSerializer, NumpySerializer
    from sagemaker.local import LocalSession
    from sagemaker.predictor import Predictor
    from sagemaker.sklearn.model import SKLearnPredictor

    record = trained.runs["iris"]
    run_dir = project / "runs" / record["job_name"]
    checked = inv(project, trained.env, "serve", "--run", record["job_name"], "--check")
    assert checked.returncode == 0, (checked.stdout + checked.stderr)[-3000:]
    served = json.loads((run_dir / "serve.json").read_text())
    assert served["handler"]["handler"] == "/opt/ml/model/code/train.py" and served["handler"]["kind"] == "user"
    assert served["environment"] == {
        "SAGEMAKER_PROGRAM": "train.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
    }
    assert "handler: /opt/ml/model/code/train.py" in (run_dir / "serve.md").read_text()

    import joblib

    model = joblib.load(model_file(record, "model.joblib", tmp_path))
    rows = trained.data["iris"][[0, 60, 120, 149]]
    expected = model.predict(rows)
    port = int(trained.env["SERVE_PORT"])
    server = subprocess.Popen(
        [INV, "serve", "--run", record["job_name"]], cwd=project, env=trained.env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        output = wait_for_line(server, "answers on", 180)
        name = output.split("endpoint ")[-1].split(" answers on")[0]
        # Published on this machine only (SageMaker local mode published it on every interface).
        mine = ["gs-ds-env.kind=serve", f"gs-ds-env.checkout={project.resolve()}"]
        containers = docker.from_env().containers.list(filters={"label": mine}, ignore_removed=True)
        bindings = [b for c in containers for b in (c.ports.get("8080/tcp") or []) if b["HostPort"] == str(port)]
        assert bindings and {b["HostIp"] for b in bindings} == {"127.0.0.1"}, bindings
        session = LocalSession(boto_session=boto3.Session(region_name="eu-west-1"))
        session.config = {"local": {"serving_port": port}}
        # SKLearnPredictor: what sklearn_estimator.deploy() returns, NPY in and out by default.
        sklearn_default = SKLearnPredictor(name, sagemaker_session=session)
        assert sklearn_default.predict(rows).tolist() == expected.tolist()
        as_csv = Predictor(name, sagemaker_session=session, serializer=CSVSerializer(), deserializer=JSONDeserializer())
        answer = as_csv.predict(rows)
        assert answer == expected.tolist() and answer[0] == expected[0]  # a bare list, as AWS's container answers
        as_numpy = Predictor(name, session, serializer=NumpySerializer(), deserializer=NumpyDeserializer())
        assert as_numpy.predict(rows.tolist()).tolist() == expected.tolist()
        # A browser's Accept: the best type the server has (the request's own, CSV), not a 406.
        browser = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
        text = Predictor(name, session, serializer=CSVSerializer()).predict(rows[:1], initial_args={"Accept": browser})
        assert text.decode().strip() == str(expected[0])
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=90)[0]
    assert server.returncode == 130 and "stopped: endpoint" in output and "Traceback" not in output, output[-3000:]
    left = docker.from_env().containers.list(all=True, filters={"label": f"gs-ds-env.checkout={project.resolve()}"})
    assert left == []


def test_a_header_less_batch_gets_one_answer_per_row_in_order_from_a_booster(trained, project, tmp_path):
    import xgboost as xgb

    record = trained.runs["booster"]
    booster = xgb.Booster()
    booster.load_model(str(model_file(record, "xgboost-model", tmp_path / "model")))
    features = trained.data["booster"][:100]
    rows = tmp_path / "new/rows.csv"  # SageMaker's batch format: no header, one row a line
    rows.parent.mkdir()
    np.savetxt(rows, features, delimiter=",", fmt="%.6f")
    done = inv(
        project, trained.env, "transform", "--input", rows, "--run", record["job_name"], "--output", tmp_path / "out"
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "transformed 100 rows" in done.stdout
    sent = rows.read_text().splitlines()
    joined = (tmp_path / "out/rows.csv").read_text().splitlines()
    assert len(joined) == 100 and all(line.startswith(row + ",") for row, line in zip(sent, joined, strict=True))
    answers = [float(line.rsplit(",", 1)[1]) for line in joined]
    expected = booster.predict(xgb.DMatrix(np.loadtxt(rows, delimiter=",")), validate_features=False).tolist()
    assert answers == pytest.approx(expected, rel=1e-5)
    # The same rows under a header: --header takes it off and puts it back with the prediction column.
    headed = tmp_path / "headed/rows.csv"
    headed.parent.mkdir()
    headed.write_text('a,"b,c",d\n' + rows.read_text())
    done = inv(project, trained.env, "transform", "--input", headed, "--run", record["job_name"], "--header",
               "--output", tmp_path / "out2")  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    joined = (tmp_path / "out2/rows.csv").read_text().splitlines()
    assert joined[0] == 'a,"b,c",d,prediction' and len(joined) == 101


def test_a_dependency_serves_beside_its_entry_point_and_what_nothing_can_serve_is_refused_at_check(
    trained, project, tmp_path
):
    layered = trained.runs["layered"]
    checked = inv(project, trained.env, "serve", "--run", layered["job_name"], "--check")
    assert checked.returncode == 0, (checked.stdout + checked.stderr)[-3000:]
    assert "code/sub/train.py" in checked.stdout
    # A model of nothing a handler or the defaults can load: one line naming what was found and what is needed.
    archive = tmp_path / "notes.tar.gz"
    (tmp_path / "notes.txt").write_text("not a model")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "notes.txt", arcname="notes.txt")
    refused = inv(project, trained.env, "serve", "--model-data", archive, "--theme", "tabular", "--check")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    # Its one line (the lines before it are the build script's notes on the unpinned test base image).
    (line,) = [line for line in refused.stderr.strip().splitlines() if not line.startswith("[image]")]
    assert "found: notes.txt" in line and "model_fn" in line and "Titanic" not in line
    # The iris model alone (no code, no marker): the framework defaults load it, never the Titanic handler.
    alone = inv(project, trained.env, "serve", "--model-data", trained.runs["iris"]["model_artifact"], "--theme",
                "tabular", "--check")  # fmt: skip
    assert alone.returncode == 0, alone.stderr[-2000:]
    assert "the framework defaults (DecisionTreeClassifier from model.joblib)" in alone.stdout


def test_endpoint_deploy_of_a_script_run_sends_a_model_archive_that_holds_its_code(
    trained, project, tmp_path, moto, registry, base_image, titanic_csv
):
    from aws_fakes import ROLE, TRUST_SAGEMAKER, aws, execution_role, sagemaker_env

    assert execution_role(moto, "gs-ds-env-sagemaker", TRUST_SAGEMAKER) == ROLE
    env = sagemaker_env(tmp_path, moto, base_image, titanic_csv, ECR_REGISTRY=registry.host)
    record = trained.runs["iris"]
    moto.reset_recording()
    deployed = inv(project, env, "endpoint.deploy", "--run", record["job_name"])
    assert deployed.returncode == 0, (deployed.stdout + deployed.stderr)[-4000:]
    calls = moto.calls()
    (create_model,) = [c.body for c in calls if c.operation == "SageMaker.CreateModel"]
    (create_endpoint,) = [c.body for c in calls if c.operation == "SageMaker.CreateEndpoint"]
    container = create_model["PrimaryContainer"]
    assert container["Environment"] == {
        "SAGEMAKER_PROGRAM": "train.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
    }
    bucket, key = container["ModelDataUrl"].removeprefix("s3://").split("/", 1)
    body = aws(moto, "s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        names = set(archive.getnames())
        assert {"model.joblib", "code/train.py"} <= names
        assert archive.extractfile("code/train.py").read() == (AWS_STYLE / "sklearn_iris/train.py").read_bytes()
    # Listing, invoking and deleting endpoints use no bucket, repository or role: none is asked for.
    bare = {
        key: value for key, value in env.items() if key not in ("S3_BUCKET", "ECR_REPOSITORY", "SAGEMAKER_ROLE_ARN")
    }
    bare["TARGET"] = "local"
    name = create_endpoint["EndpointName"]
    listed = inv(project, bare, "endpoint.list")
    assert listed.returncode == 0 and name in listed.stdout, listed.stderr
    rows = tmp_path / "rows.csv"
    rows.write_text("5.1,3.5,1.4,0.2\n")
    assert inv(project, bare, "predict", "--endpoint", name, "--input", rows).returncode == 0
    assert inv(project, bare, "endpoint.delete", name).returncode == 0
