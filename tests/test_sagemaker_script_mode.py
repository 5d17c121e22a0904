"""Script mode on TARGET=sagemaker (moto_server, docker-registry): the source dir shipped and run by the image's
toolkit, two hosts of a torch theme with torchrun, channels holding exactly this run's files, a detached job attached
later."""

from __future__ import annotations

import contextlib
import json
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from aws_fakes import BUCKET, REGION, TRUST_SAGEMAKER, aws, execution_role, inv, sagemaker_env
from conftest import INV

pytestmark = [pytest.mark.docker, pytest.mark.slow]


# ---- script mode on SageMaker: the SDK ships sourcedir.tar.gz under the prefix; the image's toolkit runs it -------
def test_script_mode_job_ships_the_source_dir_and_the_image_runs_it(
    tmp_path, project, moto, registry, base_image, titanic_csv
):
    execution_role(moto, "gs-ds-env-sagemaker", TRUST_SAGEMAKER)
    repository = "gs-ds-env-forecasting-test"
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "notes.csv").write_text("a,b\n1,2\n")
    env = sagemaker_env(tmp_path, moto, base_image, titanic_csv, ECR_REGISTRY=registry.host, ECR_REPOSITORY=repository)
    moto.reset_recording()
    plan = inv(
        project,
        env,
        "train",
        "--theme",
        "forecasting",
        "--entry-point",
        "themes/forecasting/example/train.py",
        "--channel",
        f"extra={extra}",
        "--dry-run",
    )
    assert plan.returncode == 0 and moto.calls() == [], plan.stderr
    assert f"s3://{BUCKET}/team/titanic-run/code/<job>/source/sourcedir.tar.gz" in plan.stdout
    assert "sagemaker_program=train.py" in plan.stdout
    assert f"s3://{BUCKET}/team/titanic-run/channels/extra/" in plan.stdout
    job = inv(
        project,
        env,
        "train",
        "--theme",
        "forecasting",
        "--entry-point",
        "themes/forecasting/example/train.py",
        "--channel",
        f"extra={extra}",
        "--hyperparameter",
        "horizon=6",
        "--metric-definition",
        "smape=sMAPE ([0-9.]+)",
        "--job-name",
        "gs-script-a",
    )
    output = job.stdout + job.stderr
    # moto records the job as Completed but writes no model: the run says so, after everything was sent, and
    # its record says so too.
    assert job.returncode == 1 and "model.tar.gz does not exist in S3" in output, output[-3000:]
    record = json.loads((project / "runs/gs-script-a/run.json").read_text())
    assert record["status"] == "failed" and "does not exist in S3" in record["reason"]
    (create,) = [call.body for call in moto.calls() if call.operation == "SageMaker.CreateTrainingJob"]
    hyperparameters = {key: value.strip('"') for key, value in create["HyperParameters"].items()}
    source = f"s3://{BUCKET}/team/titanic-run/code/gs-script-a/source/sourcedir.tar.gz"
    assert hyperparameters["sagemaker_program"] == "train.py"
    assert hyperparameters["sagemaker_submit_directory"] == source
    # Exactly the user's hyperparameters and the SDK's own keys: no --seed the script did not ask for.
    assert {key for key in hyperparameters if not key.startswith("sagemaker_")} == {"horizon"}
    assert hyperparameters["horizon"] == "6" and create["Environment"] == {"GS_SEED": "42"}
    definitions = {d["Name"]: d["Regex"] for d in create["AlgorithmSpecification"]["MetricDefinitions"]}
    assert definitions["smape"] == "sMAPE ([0-9.]+)" and "validation:mae" in definitions
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in create["InputDataConfig"]}
    (uri,) = channels.values()
    assert uri.startswith(f"s3://{BUCKET}/team/titanic-run/channels/extra/") and uri == record["channels"]["extra"]
    s3 = aws(moto, "s3")
    key = uri.removeprefix(f"s3://{BUCKET}/") + "notes.csv"
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"a,b\n1,2\n"
    archive_path = tmp_path / "sourcedir.tar.gz"
    s3.download_file(BUCKET, "team/titanic-run/code/gs-script-a/source/sourcedir.tar.gz", str(archive_path))
    with tarfile.open(archive_path) as archive:
        assert "train.py" in archive.getnames()

    # Play SageMaker: the pushed image, the request's hyperparameters, the toolkit fetching sourcedir.tar.gz from S3.
    root = tmp_path / "opt_ml"
    (root / "input/config").mkdir(parents=True)
    (root / "input/config/hyperparameters.json").write_text(json.dumps(create["HyperParameters"]))
    (root / "input/config/resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})
    )
    (root / "input/config/inputdataconfig.json").write_text(json.dumps({}))
    image = create["AlgorithmSpecification"]["TrainingImage"]
    run = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "host",  # moto listens on the host's 127.0.0.1
            "--add-host",
            "algo-1:127.0.0.1",  # the toolkit waits until every host of resourceconfig.json resolves
            "-v",
            f"{root}:/opt/ml",
            "-e",
            f"AWS_ENDPOINT_URL={moto.url}",
            "-e",
            "AWS_ACCESS_KEY_ID=testing",
            "-e",
            "AWS_SECRET_ACCESS_KEY=testing",
            "-e",
            f"AWS_DEFAULT_REGION={REGION}",
            image,
            "train",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    metrics = json.loads((root / "model/metrics.json").read_text())
    assert metrics["horizon"] == 6 and metrics["metrics"]["validation:mae"] > 0
    assert (root / "model/model.pkl").is_file()


TWO_HOST_JOB = """
from gs_ds_env import aws
from gs_ds_env.data import s3_data
from gs_ds_env.job import sagemaker_job, script_mode
from gs_ds_env.settings import load_settings

settings = load_settings(theme="cv", entry_point="themes/cv/example/train.py")
boto_session = aws.session(settings)
s3_data.ensure_bucket(settings, aws.client(boto_session, "s3"))
image = f"{settings.ecr_registry}/{settings.ecr_repository}:cv_311"
settings = settings.replace(instance_type="ml.c5.xlarge")
sagemaker_job.run_on_sagemaker(settings, boto_session, image, {}, "gs-two-hosts", script_mode.prepare(settings, {}))
"""


def test_two_hosts_of_a_torch_theme_reach_sagemaker_with_the_torchrun_launcher(tmp_path, project, moto, titanic_csv):
    """INSTANCE_COUNT=2 for a torch theme: the plan says torchrun on each host, and the Estimator sends two
    instances and the toolkit's torch_distributed switch (the cv image itself is not pushed: ~6 GB; its two-host
    run is proven in local mode by test_torch_examples)."""
    execution_role(moto, "gs-ds-env-sagemaker", TRUST_SAGEMAKER)
    env = sagemaker_env(tmp_path, moto, "unused-base", titanic_csv, INSTANCE_COUNT="2", ECR_REGISTRY="127.0.0.1:5000")
    moto.reset_recording()
    plan = inv(project, env, "train", "--theme", "cv", "--entry-point", "themes/cv/example/train.py", "--dry-run")
    assert plan.returncode == 0 and moto.calls() == [], plan.stderr
    assert "hosts: 2; the toolkit starts the script with torchrun on each host" in plan.stdout
    assert "'sagemaker_torch_distributed_enabled': 'true'" in plan.stdout

    moto.reset_recording()
    job = subprocess.run(
        [str(Path(INV).parent / "python"), "-c", TWO_HOST_JOB], cwd=project, env=env, capture_output=True, text=True
    )
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    (create,) = [call.body for call in moto.calls() if call.operation == "SageMaker.CreateTrainingJob"]
    assert create["ResourceConfig"]["InstanceCount"] == 2
    hyperparameters = {key: value.strip('"') for key, value in create["HyperParameters"].items()}
    assert hyperparameters["sagemaker_torch_distributed_enabled"] == "true"
    assert hyperparameters["sagemaker_program"] == "train.py"
    assert "InputDataConfig" not in create  # the example makes its data: fit(None), as the API requires


def channel_keys(moto, uri: str) -> list[str]:
    """The object names under a channel's prefix, relative to it."""
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    listed = aws(moto, "s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"].removeprefix(prefix) for item in listed)


def test_script_channels_hold_exactly_this_runs_files_and_a_detached_job_is_attached_later(
    tmp_path, project, moto, registry, base_image, titanic_csv
):
    """Three detached runs of a plain script on one channel folder: a file deleted locally is gone from the next
    run's channel, an unchanged folder is not sent again; then `inv job.attach` collects the job's model and
    reads its metrics from the job's log lines (no metrics.json), as SageMaker does."""
    execution_role(moto, "gs-ds-env-sagemaker", TRUST_SAGEMAKER)
    env = sagemaker_env(
        tmp_path, moto, base_image, titanic_csv, ECR_REGISTRY=registry.host, ECR_REPOSITORY="gs-ds-env-tabular-test"
    )
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "a.csv").write_text("Fare\n1\n3\n")
    (folder / "b.csv").write_text("Fare\n1000\n")

    def detached(job_name: str):
        moto.reset_recording()
        job = inv(
            project, env, "train", "--theme", "tabular", "--entry-point", "examples/bring-your-script/train.py",
            "--channel", f"train={folder}", "--job-name", job_name, "--detach", "--skip-preflight",
        )  # fmt: skip
        assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
        assert f"inv job.attach {job_name}" in job.stdout
        record = json.loads((project / "runs" / job_name / "run.json").read_text())
        assert record["status"] == "in progress (detached)"
        puts = [c.operation for c in moto.calls() if c.operation.startswith("S3 PUT") and "/channels/" in c.operation]
        return record["channels"]["train"], puts

    first, puts = detached("gs-channels-1")
    assert channel_keys(moto, first) == ["a.csv", "b.csv"] and len(puts) == 2
    (folder / "b.csv").unlink()
    second, puts = detached("gs-channels-2")
    assert second != first and channel_keys(moto, second) == ["a.csv"] and len(puts) == 1
    assert channel_keys(moto, first) == ["a.csv", "b.csv"]  # the first run's channel is left as it ran
    third, puts = detached("gs-channels-3")
    assert third == second and puts == []  # unchanged: nothing sent

    # SageMaker's part for job 3 (moto runs nothing): the pushed image runs the plain script as SageMaker would (the
    # toolkit fetches sourcedir.tar.gz from S3, the channel is the uploaded prefix); what it saves becomes the job's
    # model.tar.gz and what it prints its CloudWatch log.
    (create,) = [c.body for c in moto.calls() if c.operation == "SageMaker.CreateTrainingJob"]
    root = tmp_path / "opt_ml"
    (root / "input/config").mkdir(parents=True)
    (root / "input/config/hyperparameters.json").write_text(json.dumps(create["HyperParameters"]))
    (root / "input/config/resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})
    )
    (root / "input/config/inputdataconfig.json").write_text(json.dumps({"train": {"TrainingInputMode": "File"}}))
    (root / "input/data/train").mkdir(parents=True)
    s3 = aws(moto, "s3")
    for name in channel_keys(moto, third):
        s3.download_file(BUCKET, third.removeprefix(f"s3://{BUCKET}/") + name, str(root / "input/data/train" / name))
    image = create["AlgorithmSpecification"]["TrainingImage"]
    environment = [item for key, value in create["Environment"].items() for item in ("-e", f"{key}={value}")]
    run = subprocess.run(
        ["docker", "run", "--rm", "--network", "host", "--add-host", "algo-1:127.0.0.1", "-v", f"{root}:/opt/ml",
         "-e", f"AWS_ENDPOINT_URL={moto.url}", "-e", "AWS_ACCESS_KEY_ID=testing", "-e", "AWS_SECRET_ACCESS_KEY=testing",
         "-e", f"AWS_DEFAULT_REGION={REGION}", *environment, image, "train"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    output = create["OutputDataConfig"]["S3OutputPath"].removeprefix("s3://")
    bucket, prefix = output.split("/", 1)
    model = tmp_path / "model.tar.gz"
    with tarfile.open(model, "w:gz") as archive:
        for path in (root / "model").iterdir():
            archive.add(path, arcname=path.name)
    s3.upload_file(str(model), bucket, f"{prefix}/gs-channels-3/output/model.tar.gz")
    logs = aws(moto, "logs")
    group = "/aws/sagemaker/TrainingJobs"
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)
    stream = "gs-channels-3/algo-1-1764000000"
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)  # CloudWatch keeps no events from before its retention window
    printed = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(printed)],
    )
    attached = inv(project, env, "job.attach", "gs-channels-3")
    assert attached.returncode == 0, (attached.stdout + attached.stderr)[-3000:]
    record = json.loads((project / "runs/gs-channels-3/run.json").read_text())
    assert record["status"] == "completed" and record["job_status"] == "Completed"
    # From the log lines (a.csv alone: mean 2, rmse 1); moto's canned FinalMetricDataList entry (train:progress)
    # names no metric the job defined, so it is not one of the run's metrics.
    assert record["metrics"] == {"train:rows": 2.0, "validation:rmse": 1.0}
    with tarfile.open(project / "runs/gs-channels-3/model.tar.gz") as archive:
        assert archive.getnames() == ["model.json"]  # no metrics.json, and the job is complete
    assert record["entry_point"] == "train.py"
    again = inv(project, env, "job.attach", "gs-channels-3")
    assert again.returncode == 2 and "has already ended (completed)" in again.stderr
