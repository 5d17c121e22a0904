"""`inv process` on TARGET=sagemaker against real servers (moto_server, docker-registry): the plan calls nothing;
CreateProcessingJob carries the pushed image, the code and the inputs (ShardedByS3Key with --shard), the outputs,
the instances and the tags; the pushed image runs the request as SageMaker would, one shard a host; --detach and
`inv job.attach`; Ctrl-C sends StopProcessingJob. moto completes a job at once and runs no container: the
container part is played here from the recorded request."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from aws_fakes import BUCKET, REGION, ROLE, TRUST_SAGEMAKER, aws, execution_role, inv, operations, sagemaker_env
from conftest import INV

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPOSITORY = "gs-ds-env-tabular-test"
PROBE = """
import json, pathlib, sys
root = pathlib.Path("/opt/ml/processing/input")
seen = {
    "argv": sys.argv[1:],
    "raw": sorted(str(p.relative_to(root / "raw")) for p in (root / "raw").rglob("*") if p.is_file()),
    "resourceconfig": json.loads(pathlib.Path("/opt/ml/config/resourceconfig.json").read_text()),
}
out = pathlib.Path("/opt/ml/processing/output/seen")
out.mkdir(parents=True, exist_ok=True)
(out / f"seen-{seen['resourceconfig']['current_host']}.json").write_text(json.dumps(seen))
"""
ARGUMENTS = ["--since", "2026-01-01", "two words"]


@pytest.fixture(scope="module")
def scripts(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("processing")
    (folder / "code").mkdir()
    (folder / "code/probe.py").write_text(PROBE)
    for day in range(1, 6):
        (folder / "raw").mkdir(exist_ok=True)
        (folder / f"raw/day-{day}.csv").write_text(f"day,events\n{day},{day * 10}\n")
    return folder


def process_options(scripts: Path, *extra: str) -> list[str]:
    return ["process", "--code", str(scripts / "code/probe.py"), "--input", f"raw={scripts / 'raw'}", "--shard",
            "--instance-count", "2", "--output", "seen", *(f"--argument={a}" for a in ARGUMENTS), *extra]  # fmt: skip


def play_processing(create: dict, moto, scratch: Path) -> list[dict]:
    """What SageMaker does with a CreateProcessingJob request on each host: pull the image, download the code and
    this host's share of each ShardedByS3Key input, write resourceconfig.json, run the entrypoint and arguments."""
    s3 = aws(moto, "s3")
    cluster = create["ProcessingResources"]["ClusterConfig"]
    hosts = [f"algo-{i + 1}" for i in range(cluster["InstanceCount"])]
    image = create["AppSpecification"]["ImageUri"]
    subprocess.run(["docker", "pull", "--quiet", image], check=True, capture_output=True)
    seen = []
    for index, host in enumerate(hosts):
        root = scratch / host
        for item in create["ProcessingInputs"]:
            source = item["S3Input"]
            bucket, prefix = source["S3Uri"].removeprefix("s3://").split("/", 1)
            keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"])
            if source["S3DataDistributionType"] == "ShardedByS3Key":
                keys = keys[index :: len(hosts)]
            for key in keys:
                local = root / source["LocalPath"].lstrip("/") / key[len(prefix) :].lstrip("/")
                local.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, key, str(local))
        config = root / "opt/ml/config"
        config.mkdir(parents=True)
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": host, "hosts": hosts}))
        output = root / "opt/ml/processing/output"
        output.mkdir(parents=True, exist_ok=True)
        entrypoint, *command = create["AppSpecification"]["ContainerEntrypoint"]
        run = subprocess.run(
            ["docker", "run", "--rm", "-v", f"{root / 'opt/ml'}:/opt/ml", "--entrypoint", entrypoint, image,
             *command, *create["AppSpecification"]["ContainerArguments"]],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        seen.append(json.loads((output / f"seen/seen-{host}.json").read_text()))
    return seen


def test_create_processing_job_carries_the_image_sharded_inputs_outputs_and_tags(
    tmp_path, project, moto, registry, base_image, titanic_csv, scripts
):
    execution_role(moto, "gs-ds-env-sagemaker", TRUST_SAGEMAKER)
    env = sagemaker_env(tmp_path, moto, base_image, titanic_csv, ECR_REGISTRY=registry.host, ECR_REPOSITORY=REPOSITORY,
                        THEME="tabular", TAGS="project=gs-ds-env,owner=tests", MAX_RUN="1800")  # fmt: skip
    moto.reset_recording()
    plan = inv(project, env, *process_options(scripts, "--dry-run"))
    assert plan.returncode == 0 and moto.calls() == [], plan.stdout + plan.stderr
    assert (
        "raw: " in plan.stdout
        and "5 object(s) spread over 2 instance(s): at most 3 each (ShardedByS3Key)" in plan.stdout
    )
    assert f"-> s3://{BUCKET}/team/titanic-run/processing/<job>/seen" in plan.stdout
    assert "sagemaker:CreateProcessingJob: 2 x auto (shown as ml.m5.large" in plan.stdout
    assert "at about 0.115 USD/h each: at most 0.12 USD (MAX_RUN bound)" in plan.stdout  # 2 x 0.115 x 1800 s

    job = inv(project, env, *process_options(scripts, "--job-name", "gs-proc-a"))
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    assert "processing job gs-proc-a: Completed" in job.stdout
    calls = moto.calls()
    (create,) = [call.body for call in calls if call.operation == "SageMaker.CreateProcessingJob"]
    content_tag = next(tag for tag in registry.tags(REPOSITORY) if tag.startswith("tabular_311-"))
    assert create["AppSpecification"] == {
        "ImageUri": f"{registry.host}/{REPOSITORY}:{content_tag}",
        "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/probe.py"],
        "ContainerArguments": ARGUMENTS,
    }
    inputs = {item["InputName"]: item["S3Input"] for item in create["ProcessingInputs"]}
    assert set(inputs) == {"code", "raw"}
    assert inputs["raw"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert inputs["code"]["S3DataDistributionType"] == "FullyReplicated"
    assert inputs["raw"]["LocalPath"] == "/opt/ml/processing/input/raw"
    assert inputs["code"]["LocalPath"] == "/opt/ml/processing/input/code"
    assert inputs["raw"]["S3Uri"].startswith(f"s3://{BUCKET}/team/titanic-run/processing-input/raw/")
    (output,) = create["ProcessingOutputConfig"]["Outputs"]
    assert output["OutputName"] == "seen"
    assert output["S3Output"]["S3Uri"] == f"s3://{BUCKET}/team/titanic-run/processing/gs-proc-a/seen"
    assert output["S3Output"]["LocalPath"] == "/opt/ml/processing/output/seen"
    cluster = create["ProcessingResources"]["ClusterConfig"]
    assert (cluster["InstanceCount"], cluster["InstanceType"]) == (2, "ml.m5.large")
    assert create["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800}
    assert create["RoleArn"] == ROLE and {"Key": "owner", "Value": "tests"} in create["Tags"]
    # The uploaded input holds exactly the local files, byte for byte.
    s3 = aws(moto, "s3")
    prefix = inputs["raw"]["S3Uri"].removeprefix(f"s3://{BUCKET}/")
    listed = {o["Key"][len(prefix) :] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]}
    assert listed == {f"day-{day}.csv" for day in range(1, 6)}
    assert s3.get_object(Bucket=BUCKET, Key=prefix + "day-3.csv")["Body"].read() == b"day,events\n3,30\n"
    record = json.loads((project / "runs/gs-proc-a/run.json").read_text())
    assert (record["kind"], record["status"], record["arguments"]) == ("processing", "completed", ARGUMENTS)
    assert record["outputs"]["seen"]["uri"] == output["S3Output"]["S3Uri"]
    assert record["channels"]["raw"] == inputs["raw"]["S3Uri"]

    # SageMaker's part, played from the request: each host gets its share of the objects, all of them once.
    seen = play_processing(create, moto, tmp_path / "hosts")
    assert [s["argv"] for s in seen] == [ARGUMENTS, ARGUMENTS]
    assert [s["resourceconfig"]["current_host"] for s in seen] == ["algo-1", "algo-2"]
    shares = [s["raw"] for s in seen]
    assert all(shares) and sorted(shares[0] + shares[1]) == [f"day-{day}.csv" for day in range(1, 6)]
    assert max(len(share) for share in shares) == 3  # what the plan said

    # Detached, then attached: the second run sends no input again (content-addressed) and completes its record.
    moto.reset_recording()
    detached = inv(project, env, *process_options(scripts, "--job-name", "gs-proc-d", "--detach"))
    assert detached.returncode == 0, (detached.stdout + detached.stderr)[-3000:]
    assert "[s3] input raw:" in detached.stdout and "(0 of 5 file(s) sent)" in detached.stdout
    assert "inv job.attach gs-proc-d" in detached.stdout
    assert json.loads((project / "runs/gs-proc-d/run.json").read_text())["status"] == "in progress (detached)"
    attached = inv(project, env, "job.attach", "gs-proc-d")
    assert attached.returncode == 0, (attached.stdout + attached.stderr)[-3000:]
    record = json.loads((project / "runs/gs-proc-d/run.json").read_text())
    assert record["status"] == "completed"
    assert "SageMaker.DescribeProcessingJob" in operations(moto.calls())
    # Attached, the record still points at the processing job's log and console page, not a training job's.
    assert record["log_stream"].startswith("/aws/sagemaker/ProcessingJobs / gs-proc-d")
    assert record["console_url"].endswith("#/processing-jobs/gs-proc-d")


STOPPED_JOB = """
import json, sys, time
import sagemaker.session
from gs_ds_env.job import deploy, processing
from gs_ds_env.settings import load_settings

def still_running(self, job_name, *args, **kwargs):  # moto ends every job at once: this one keeps going
    print("following the job", flush=True)
    time.sleep(300)

sagemaker.session.Session.logs_for_processing_job = still_running
settings = load_settings(theme="tabular", entry_point=sys.argv[1])
try:
    deploy.run_process(settings, inputs=[], outputs=[], arguments=[], job_name="gs-proc-stopped", skip_preflight=True)
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_ctrl_c_stops_a_processing_job_with_stop_processing_job_and_records_it(
    tmp_path, project, moto, registry, base_image, titanic_csv, scripts
):
    execution_role(moto, "gs-ds-env-sagemaker", TRUST_SAGEMAKER)
    env = sagemaker_env(tmp_path, moto, base_image, titanic_csv, ECR_REGISTRY=registry.host, ECR_REPOSITORY=REPOSITORY)
    moto.reset_recording()
    log = tmp_path / "job.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(Path(INV).parent / "python"), "-c", STOPPED_JOB, str(scripts / "code/probe.py")], cwd=project,
            env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and "following the job" not in log.read_text() and process.poll() is None:
            time.sleep(0.5)
        assert "following the job" in log.read_text(), log.read_text()[-3000:]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130, log.read_text()[-3000:]
    assert "stopping processing job gs-proc-stopped (sagemaker:StopProcessingJob)" in log.read_text()
    stops = [call.body for call in moto.calls() if call.operation == "SageMaker.StopProcessingJob"]
    assert stops == [{"ProcessingJobName": "gs-proc-stopped"}]
    described = aws(moto, "sagemaker").describe_processing_job(ProcessingJobName="gs-proc-stopped")
    assert described["ProcessingJobStatus"] == "Stopped"
    record = json.loads((project / "runs/gs-proc-stopped/run.json").read_text())
    assert record["status"] == "stopped (Ctrl-C): StopProcessingJob sent" and record["kind"] == "processing"
    assert REGION in record["console_url"]
