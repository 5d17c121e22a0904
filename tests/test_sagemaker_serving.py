"""Serving on TARGET=sagemaker (moto_server, docker-registry): an endpoint deployed (sized by the model's measured
memory, tagged), listed, invoked, deleted (never another team's), and a batch transform job."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
from pathlib import Path

import pytest
from aws_fakes import BUCKET, REPOSITORY, ROLE, TRUST_SAGEMAKER, aws, execution_role, inv, operations, sagemaker_env

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def trained_model(project: Path, env: dict, titanic_csv: Path, scratch: Path) -> tuple[Path, Path]:
    """A real Titanic model: the theme image pushed by `inv push`, `train` run on a split of the data. Returns
    (model.tar.gz, the validation CSV)."""
    pushed = inv(project, env, "push")
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    content_tag = next(line.rsplit(":", 1)[1] for line in pushed.stdout.splitlines() if line.startswith("image: "))
    rows = titanic_csv.read_text().splitlines()
    root = scratch / "opt_ml"
    for channel, part in (("train", rows[1:700]), ("validation", rows[700:])):
        (root / "input/data" / channel).mkdir(parents=True)
        (root / "input/data" / channel / f"{channel}.csv").write_text("\n".join([rows[0], *part]) + "\n")
    run = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{root}:/opt/ml", f"{REPOSITORY}:{content_tag}", "train"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    tarball = scratch / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        for path in (root / "model").iterdir():
            archive.add(path, arcname=path.name)
    return tarball, root / "input/data/validation/validation.csv"


def test_endpoint_deploy_list_predict_delete_and_a_transform_job(
    tmp_path, project, moto, registry, base_image, titanic_csv
):
    """moto records the calls (it runs no container: InvokeEndpoint answers a canned body, a transform job writes
    nothing); the model itself is real and is first loaded in its image, which sizes the endpoint."""
    assert execution_role(moto, "gs-ds-env-sagemaker", TRUST_SAGEMAKER) == ROLE
    env = sagemaker_env(
        tmp_path, moto, base_image, titanic_csv, ECR_REGISTRY=registry.host, TAGS="project=gs-ds-env,owner=tests"
    )
    model, validation = trained_model(project, env, titanic_csv, tmp_path / "train")
    sagemaker = aws(moto, "sagemaker")

    moto.reset_recording()
    deployed = inv(project, env, "endpoint.deploy", "--model-data", str(model), "--theme", "tabular")
    assert deployed.returncode == 0, (deployed.stdout + deployed.stderr)[-4000:]
    assert "serverless, 1024 MB" in deployed.stdout and "peak memory" in deployed.stdout
    calls = moto.calls()
    ops = [op for op in operations(calls) if op.startswith("SageMaker.Create")]
    assert ops == ["SageMaker.CreateModel", "SageMaker.CreateEndpointConfig", "SageMaker.CreateEndpoint"]
    (create_model,) = [c.body for c in calls if c.operation == "SageMaker.CreateModel"]
    (create_config,) = [c.body for c in calls if c.operation == "SageMaker.CreateEndpointConfig"]
    (create_endpoint,) = [c.body for c in calls if c.operation == "SageMaker.CreateEndpoint"]
    name = create_endpoint["EndpointName"]
    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:16]
    assert (
        create_model["PrimaryContainer"]["ModelDataUrl"]
        == f"s3://{BUCKET}/team/titanic-run/models/{digest}/model.tar.gz"
    )
    assert create_model["PrimaryContainer"]["Image"].startswith(f"{registry.host}/{REPOSITORY}:tabular_311-")
    assert create_model["ExecutionRoleArn"] == ROLE
    (variant,) = create_config["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 1024, "MaxConcurrency": 5}
    assert (
        variant["ModelName"] == create_model["ModelName"]
        and create_endpoint["EndpointConfigName"] == create_config["EndpointConfigName"]
    )
    for body in (create_model, create_config, create_endpoint):
        assert {"Key": "owner", "Value": "tests"} in body["Tags"] and {
            "Key": "gs-ds-env:run",
            "Value": "model-data",
        } in body["Tags"]

    listed = inv(project, env, "endpoint.list")
    assert listed.returncode == 0 and name in listed.stdout and "serverless 1024 MB" in listed.stdout
    assert "InService" in listed.stdout and "0 idle / 0.072 answering" in listed.stdout

    moto.reset_recording()
    predicted = inv(project, env, "predict", "--endpoint", name, "--input", str(validation))
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    (invoke,) = [c for c in moto.calls() if c.operation == f"S3 POST /endpoints/{name}/invocations"]  # REST call
    assert invoke.body == validation.read_text() and invoke.headers.get("Content-Type") == "text/csv"

    # Another team's endpoint (no gs-ds-env:run tag) is never deleted.
    sagemaker.create_model(ModelName="theirs", PrimaryContainer={"Image": "x:1"}, ExecutionRoleArn=ROLE)
    sagemaker.create_endpoint_config(
        EndpointConfigName="theirs",
        ProductionVariants=[
            {
                "VariantName": "a",
                "ModelName": "theirs",
                "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1},
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="theirs", EndpointConfigName="theirs")
    refused = inv(project, env, "endpoint.delete", "theirs")
    assert refused.returncode == 2 and "was not created by this project" in refused.stderr
    dry = inv(project, env, "endpoint.delete", name, "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would delete") == 3
    assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
    deleted = inv(project, env, "endpoint.delete", name)
    assert deleted.returncode == 0, deleted.stderr[-2000:]
    assert [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]] == ["theirs"]
    assert [c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]] == ["theirs"]
    assert [m["ModelName"] for m in sagemaker.list_models()["Models"]] == ["theirs"]
    assert "no endpoints of this project" in inv(project, env, "endpoint.list").stdout

    # A transform job: the input without its header (the columns go to the model), two instances, joined output.
    moto.reset_recording()
    transformed = inv(
        project,
        env,
        "transform",
        "--input",
        str(validation),
        "--model-data",
        str(model),
        "--theme",
        "tabular",
        "--instance-count",
        "2",
    )
    assert transformed.returncode == 1 and "Traceback" not in transformed.stderr
    assert "wrote nothing under" in transformed.stderr  # moto runs no container
    calls = moto.calls()
    (job,) = [c.body for c in calls if c.operation == "SageMaker.CreateTransformJob"]
    (transform_model,) = [c.body for c in calls if c.operation == "SageMaker.CreateModel"]
    assert job["TransformResources"] == {"InstanceType": "ml.m5.large", "InstanceCount": 2}
    assert job["DataProcessing"]["JoinSource"] == "Input"
    assert job["TransformInput"]["SplitType"] == "Line" and job["TransformInput"]["ContentType"] == "text/csv"
    source = job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    assert source == f"s3://{BUCKET}/team/titanic-run/transform-input/{job['TransformJobName']}/"
    assert (
        job["TransformOutput"]["S3OutputPath"]
        == f"s3://{BUCKET}/team/titanic-run/transform-output/{job['TransformJobName']}"
    )
    assert job["TransformOutput"]["AssembleWith"] == "Line" and {"Key": "owner", "Value": "tests"} in job["Tags"]
    header = validation.read_text().splitlines()[0]
    assert transform_model["PrimaryContainer"]["Environment"] == {"GS_CSV_COLUMNS": header}
    sent = (
        aws(moto, "s3")
        .get_object(Bucket=BUCKET, Key=source.removeprefix(f"s3://{BUCKET}/") + "validation.csv")["Body"]
        .read()
        .decode()
    )
    assert sent.splitlines() == validation.read_text().splitlines()[1:]
    assert "SageMaker.DeleteModel" in operations(calls)  # the transform's model does not outlive it
