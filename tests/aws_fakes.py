"""Real servers for the AWS path: moto_server (AWS APIs over HTTP, every request recorded) and a docker-registry."""

from __future__ import annotations

import atexit
import base64
import functools
import json
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from conftest import INV, VENV_BIN, copy_repo, tool_env

from gs_ds_env.settings import load_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, what: str, process: subprocess.Popen, log: Path) -> None:
    for _ in range(100):
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url}: {log.read_text()[-2000:]}")


@dataclass
class Call:
    operation: str  # "SageMaker.CreateTrainingJob", "S3 PUT /bucket/key" (any REST call), "STS GetCallerIdentity", ...
    body: dict | str
    headers: dict = field(default_factory=dict)


class MotoServer:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.recording = folder / "moto-recording.jsonl"
        log = folder / "moto.log"
        env = {"MOTO_ENABLE_RECORDING": "1", "MOTO_RECORDER_FILEPATH": str(self.recording), "PATH": "/usr/bin:/bin"}
        self.process = subprocess.Popen(
            [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_for(f"{self.url}/moto-api/", "moto_server", self.process, log)

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }

    def client(self, service: str, region: str):
        return boto3.Session(region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing").client(
            service, endpoint_url=self.url
        )

    def reset_recording(self) -> None:
        self.recording.write_text("")

    def calls(self) -> list[Call]:
        if not self.recording.exists():
            return []
        calls = []
        for line in self.recording.read_text().splitlines():
            entry = json.loads(line)
            raw = entry.get("body") or ""
            if entry.get("body_encoded"):
                raw = base64.b64decode(raw).decode("utf-8", "replace")
            target = entry["headers"].get("X-Amz-Target", "")
            path = entry["url"].split("://", 1)[-1].split("/", 1)[-1]
            if target:
                calls.append(
                    Call(target.replace("AmazonEC2ContainerRegistry_V20150921", "ECR"), json.loads(raw) if raw else {})
                )
            elif "Action=" in raw:
                action = raw.split("Action=", 1)[1].split("&", 1)[0]
                calls.append(Call(f"Query {action}", raw))
            else:
                calls.append(Call(f"S3 {entry['method']} /{path.split('?')[0]}", raw, entry["headers"]))
        return calls

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class Registry:
    """Debian's docker-registry, no auth, plain HTTP on loopback (Docker treats 127.0.0.0/8 as insecure-allowed)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = folder / "registry.yml"
        config.write_text(
            f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\nhttp:\n  addr: {self.host}\n"
        )
        log = folder / "registry.log"
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log.open("w"), stderr=subprocess.STDOUT
        )
        wait_for(f"http://{self.host}/v2/", "docker-registry", self.process, log)

    def tags(self, repository: str) -> list[str]:
        with urllib.request.urlopen(f"http://{self.host}/v2/{repository}/tags/list") as response:
            return sorted(json.load(response)["tags"] or [])

    def digest(self, repository: str, tag: str) -> str:
        request = urllib.request.Request(
            f"http://{self.host}/v2/{repository}/manifests/{tag}",
            method="HEAD",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        with urllib.request.urlopen(request) as response:
            return response.headers["Docker-Content-Digest"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


REGION = "eu-west-1"


BUCKET = "gs-ds-env-test-bucket"


REPOSITORY = "gs-ds-env-tabular-test"


ROLE = "arn:aws:iam::123456789012:role/gs-ds-env-sagemaker"


@functools.cache
def offline_project() -> Path:
    """One copy of the project per test process for the in-process AWS tests' settings: a .env in the checkout
    never leaks into them."""
    root = Path(tempfile.mkdtemp(prefix="gs-offline-aws-"))
    atexit.register(shutil.rmtree, root, True)
    return copy_repo(root / "project", "bin", "themes", "docker", ".env.example")


def offline_settings(**overrides):
    values = dict(
        repo_root=offline_project(),
        target="sagemaker",
        aws_region=REGION,
        s3_bucket="team-bucket",
        s3_prefix="ds/titanic",
        sagemaker_role_arn=ROLE,
        ecr_repository="gs-ds-env-tabular",
        base_job_name="gs-ds-env-titanic",
    )
    return load_settings(**{**values, **overrides})


def offline_session() -> boto3.Session:
    return boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


def aws(moto, service: str):
    return moto.client(service, REGION)


def sagemaker_env(tmp_path: Path, moto, base_image: str, titanic_csv: Path, **extra: str) -> dict[str, str]:
    settings = dict(
        TARGET="sagemaker",
        PY="3.11",
        BASE_IMAGE=base_image,
        TITANIC_CSV=str(titanic_csv),
        AWS_REGION=REGION,
        S3_BUCKET=BUCKET,
        S3_PREFIX="team/titanic-run",
        ECR_REPOSITORY=REPOSITORY,
        SAGEMAKER_ROLE_ARN=ROLE,
        WORKING_DIR=str(tmp_path / "work"),
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter"),
        DOCKER_CONFIG=str(tmp_path / "docker-config"),
    )
    return tool_env(**moto.env(), **{**settings, **extra})


def inv(project: Path, env: dict[str, str], *args: str):
    return subprocess.run([INV, *args], cwd=project, env=env, capture_output=True, text=True)


TRUST_SAGEMAKER = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "sagemaker.amazonaws.com"}}],
}


TRUST_EC2 = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "ec2.amazonaws.com"}}],
}


def execution_role(moto, name: str, trust: dict) -> str:
    """The role in moto's IAM (created once; the session's moto keeps it)."""
    iam = moto.client("iam", "us-east-1")
    try:
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        return iam.get_role(RoleName=name)["Role"]["Arn"]


def play_sagemaker(moto, request: dict, job_name: str, scratch: Path) -> None:
    """Do what SageMaker does with a CreateTrainingJob request: pull the image, fetch the channels into
    /opt/ml/input/data, run `train`, and upload /opt/ml/model as <output>/<job>/output/model.tar.gz."""
    s3 = aws(moto, "s3")
    root = scratch / "opt_ml"
    for channel in request["InputDataConfig"]:
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
        bucket, prefix = uri.removeprefix("s3://").split("/", 1)
        folder = root / "input/data" / channel["ChannelName"]
        folder.mkdir(parents=True)
        for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
            s3.download_file(bucket, item["Key"], str(folder / Path(item["Key"]).name))
    (root / "input/config").mkdir(parents=True)
    (root / "input/config/hyperparameters.json").write_text(json.dumps(request["HyperParameters"]))
    image = request["AlgorithmSpecification"]["TrainingImage"]
    subprocess.run(["docker", "pull", "--quiet", image], check=True, capture_output=True)
    run = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{root}:/opt/ml", image, "train"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    tarball = scratch / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        for path in (root / "model").iterdir():
            archive.add(path, arcname=path.name)
    output = request["OutputDataConfig"]["S3OutputPath"].removeprefix("s3://")
    bucket, prefix = output.split("/", 1)
    s3.upload_file(str(tarball), bucket, f"{prefix}/{job_name}/output/model.tar.gz")
    outputs = scratch / "output.tar.gz"  # /opt/ml/output/data, as SageMaker tars it
    with tarfile.open(outputs, "w:gz") as archive:
        archive.add(root / "output/data", arcname="data")
    s3.upload_file(str(outputs), bucket, f"{prefix}/{job_name}/output/output.tar.gz")


def operations(calls) -> list[str]:
    return [call.operation for call in calls]


def mutating(operation: str) -> bool:
    """A call that creates, uploads or starts something (what a preflight must never make)."""
    return operation.startswith(
        (
            "ECR.CreateRepository",
            "ECR.PutImage",
            "ECR.InitiateLayerUpload",
            "S3 PUT",
            "S3 POST",
            "SageMaker.CreateTrainingJob",
        )
    )
