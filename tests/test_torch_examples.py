"""The torch themes' examples train in their own images through `inv train --entry-point` (local mode), with the
same metrics as in the theme's kernel; the cv example on two hosts (local mode's instance_count=2: two containers
on one network) forms one torch.distributed process group through the toolkit's torchrun launcher.

torch comes from PyPI (TORCH_BACKEND=none: the CUDA build, about 6 GB per image; the cpu/cuNNN indexes are not
reachable from CI). Both themes share one WORKING_DIR (one uv cache, torch downloaded once); each theme's images
are removed when its tests end, so the disk holds one torch image at a time."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import INV, clone_project, example_metrics_in_kernel, post, started_server, tool_env, train_plain_script

pytestmark = [pytest.mark.docker, pytest.mark.slow]

METRICS = {"validation:accuracy", "validation:loss"}


@pytest.fixture(scope="module")
def shared_work(tmp_path_factory):
    work = tmp_path_factory.mktemp("torch-work")
    yield work
    shutil.rmtree(work, ignore_errors=True)  # the uv cache holds torch unpacked (~6 GB)


@pytest.fixture(scope="module", params=["cv", "tsai"])
def torch_theme(request, tmp_path_factory, base_image, shared_work):
    theme = request.param
    root = tmp_path_factory.mktemp(f"{theme}-example")
    project = clone_project(root / "project")
    image_name = f"gs-ds-env-{theme}-example-test"
    env = tool_env(
        PY="3.11",
        BASE_IMAGE=base_image,
        TORCH_BACKEND="none",
        IMAGE_NAME=image_name,
        WORKING_DIR=str(shared_work),
        JUPYTER_DATA_DIR=str(root / "jupyter"),
    )
    kernel = subprocess.run([INV, "kernel", "--theme", theme], cwd=project, env=env, capture_output=True, text=True)
    assert kernel.returncode == 0, kernel.stderr[-3000:]
    yield theme, root, project, env
    tags = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", image_name], capture_output=True, text=True
    ).stdout.split()
    if tags:
        subprocess.run(["docker", "rmi", "--force", *tags], capture_output=True)
    # Its build stage (~6 GB, dangling once the image is built), by its label: not another build's intermediate images.
    subprocess.run(
        ["docker", "image", "prune", "--force", "--filter", f"label=gs-ds-env.deps-of={theme}"], capture_output=True
    )
    shutil.rmtree(root, ignore_errors=True)


def run_records(project: Path) -> dict[Path, dict]:
    return {path.parent: json.loads(path.read_text()) for path in (project / "runs").glob("*/run.json")}


def train(project: Path, env: dict, theme: str, **extra_env: str) -> tuple[subprocess.CompletedProcess, dict]:
    before = run_records(project)
    job = subprocess.run(
        [INV, "train", "--theme", theme, "--entry-point", f"themes/{theme}/example/train.py"],
        cwd=project,
        env={**env, **extra_env},
        capture_output=True,
        text=True,
    )
    assert job.returncode == 0, (job.stdout + job.stderr)[-5000:]
    (run_dir,) = set(run_records(project)) - set(before)
    return job, run_records(project)[run_dir]


def model_files(record: dict) -> tuple[set[str], dict]:
    with tarfile.open(record["model_artifact"]) as archive:
        return set(archive.getnames()), json.load(archive.extractfile("metrics.json"))


def test_the_example_gives_the_same_metrics_in_the_kernel_and_as_a_job_in_the_image(torch_theme):
    theme, root, project, env = torch_theme
    kernel_metrics = example_metrics_in_kernel(project, theme, root / "kernel-model")

    job, record = train(project, env, theme)
    assert "Invoking script with the following command" in job.stdout  # the toolkit ran it
    assert record["parity"]["checked"] and record["parity"]["differences"] == []
    names, document = model_files(record)
    assert {"model.pt", "metrics.json"} <= names
    assert set(record["metrics"]) == METRICS
    assert record["metrics"] == kernel_metrics and kernel_metrics["validation:accuracy"] > 0.75

    # The model carries its handler: the image serves it (`serve`), and its answers are the trained model's.
    assert "code/inference.py" in names
    with tarfile.open(record["model_artifact"]) as archive:
        archive.extractall(root / "served-model", filter="data")
    container, port = started_server(record["image"]["uri"], root / "served-model", SAGEMAKER_MODEL_SERVER_WORKERS="1")
    try:
        if theme == "cv":
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split

            images, labels = load_digits(return_X_y=True)
            _, validation = train_test_split(range(len(labels)), test_size=0.2, stratify=labels, random_state=42)
            body = json.dumps({"instances": [images[i].tolist() for i in validation]}).encode()
            status, answer = post(port, body, "application/json")
            assert status == 200, answer
            digits = [p["digit"] for p in json.loads(answer)["predictions"]]
            accuracy = sum(d == labels[i] for d, i in zip(digits, validation, strict=True)) / len(validation)
            assert round(accuracy, 6) == record["metrics"]["validation:accuracy"]  # the trained model, served
            assert post(port, b"1,2,3\n", "text/csv") == (
                400,
                "each image must be 64 numbers (8 rows of 8), got shape [3]\n",
            )
        else:
            import math

            t = [i / 63 for i in range(64)]
            sine = [math.sin(2 * math.pi * 2 * x) for x in t]
            square = [1.0 if v >= 0 else -1.0 for v in sine]
            status, answer = post(
                port,
                f"{','.join(map(str, sine))}\n{','.join(map(str, square))}\n".encode(),
                "text/csv",
                "application/json",
            )
            assert status == 200, answer
            answers = json.loads(answer)["predictions"]
            assert len(answers) == 2 and all(a["class"] in (0, 1) and 0.5 <= a["probability"] <= 1 for a in answers)
            assert post(port, b"1,2\n", "text/csv")[0] == 400
    finally:
        container.remove(force=True)


@pytest.mark.parametrize("torch_theme", ["cv"], indirect=True)  # tsai's example is single-process
def test_two_hosts_form_one_process_group_through_the_toolkits_torchrun(torch_theme):
    theme, _, project, env = torch_theme
    plan = subprocess.run(
        [INV, "train", "--theme", theme, "--entry-point", f"themes/{theme}/example/train.py", "--dry-run"],
        cwd=project,
        env={**env, "INSTANCE_COUNT": "2"},
        capture_output=True,
        text=True,
    )
    assert plan.returncode == 0, plan.stderr
    assert "instance_count=2" in plan.stdout and "torchrun on each host" in plan.stdout

    job, record = train(project, env, theme, INSTANCE_COUNT="2")
    assert record["hyperparameters"]["sagemaker_torch_distributed_enabled"] == "true"
    assert "torchrun --nnodes 2 --nproc_per_node 1 --master_addr algo-1" in job.stdout
    assert job.stdout.count("process group: rank") == 2  # one line from each container
    _, document = model_files(record)
    distributed = document["distributed"]
    # Both ranks joined one group (0 + 1), each trained half the rows, and DDP left them the same weights.
    assert distributed["world_size"] == 2 and distributed["rank_sum"] == 1.0
    assert distributed["weights_differ_by"] == 0.0 and distributed["train_rows_per_rank"] == 719
    assert 0.5 < record["metrics"]["validation:accuracy"] <= 1.0


def test_a_plain_sagemaker_script_runs_unchanged_in_the_torch_image(torch_theme, tmp_path):
    """examples/bring-your-script: strict argparse, no metrics.json, metrics printed; the channel a single file."""
    theme, _, project, env = torch_theme
    rows = tmp_path / "rows.csv"
    rows.write_text("Fare\n1\n3\n")
    record = train_plain_script(project, env, theme, "--channel", f"train={rows}")
    assert record["metrics"] == {"train:rows": 2.0, "validation:rmse": 1.0}
