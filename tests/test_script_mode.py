"""Script mode: the user's code runs in a theme's image through the SageMaker training toolkit (`inv train
--entry-point`), gives the same metrics as in the theme's kernel, and a failing script is one clear line.

Runs the forecasting theme (Python 3.11, the offline base): its kernel, its image and its example. The torch
themes' examples are not built here yet (see the README).
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import INV, clone_project, example_metrics_in_kernel, tool_env

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def forecasting(tmp_path_factory, base_image):
    root = tmp_path_factory.mktemp("script-mode")
    project = clone_project(root / "project")
    env = tool_env(
        PY="3.11",
        BASE_IMAGE=base_image,
        TORCH_BACKEND="none",
        WORKING_DIR=str(root / "work"),
        JUPYTER_DATA_DIR=str(root / "jupyter"),
    )
    kernel = subprocess.run(
        [INV, "kernel", "--theme", "forecasting"], cwd=project, env=env, capture_output=True, text=True
    )
    assert kernel.returncode == 0, kernel.stderr[-3000:]
    return root, project, env


def train(project: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [INV, "train", "--theme", "forecasting", *args], cwd=project, env=env, capture_output=True, text=True
    )


def new_run(project: Path, before: set[Path]) -> Path:
    (run_dir,) = set((project / "runs").glob("*")) - before
    return run_dir


def runs(project: Path) -> set[Path]:
    return set((project / "runs").glob("*")) if (project / "runs").is_dir() else set()


def test_the_example_gives_the_same_metrics_in_the_kernel_and_as_a_job_in_the_image(forecasting):
    root, project, env = forecasting
    kernel_metrics = example_metrics_in_kernel(project, "forecasting", root / "kernel-model")

    before = runs(project)
    job = train(project, env, "--entry-point", "themes/forecasting/example/train.py")
    assert job.returncode == 0, (job.stdout + job.stderr)[-4000:]
    assert "Invoking script with the following command" in job.stdout  # the toolkit ran it
    run_dir = new_run(project, before)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["metrics"] == kernel_metrics and record["metrics"]["validation:mae"] > 0
    assert record["entry_point"] == "train.py" and record["hyperparameters"] == {"seed": "42"}
    assert record["parity"]["checked"] and record["parity"]["differences"] == []
    with tarfile.open(record["model_artifact"]) as archive:
        assert {"model.pkl", "metrics.json"} <= set(archive.getnames())
    assert "## Metrics" in (run_dir / "report.md").read_text()


def test_a_failing_script_is_one_line_with_its_own_error(forecasting, tmp_path):
    _, project, env = forecasting
    script = tmp_path / "code/train.py"
    script.parent.mkdir()
    script.write_text("raise ValueError('boom from the user script')\n")
    before = runs(project)
    job = train(project, env, "--entry-point", str(script))
    assert job.returncode == 1
    last = job.stderr.strip().splitlines()[-1]
    assert last.startswith("error: local training job ") and "ValueError: boom from the user script" in last
    assert "Traceback" not in job.stderr.split("error: local training job")[-1]
    with tarfile.open(new_run(project, before) / "output.tar.gz") as archive:
        assert "boom from the user script" in archive.extractfile("failure").read().decode()


def test_a_theme_image_without_code_says_how_to_give_it_some(forecasting, tmp_path):
    _, project, env = forecasting
    built = subprocess.run(
        [INV, "build", "--theme", "forecasting"], cwd=project, env=env, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr[-3000:]
    image = next(line.split()[1] for line in built.stdout.splitlines() if line.startswith("image: "))
    output = tmp_path / "output"
    output.mkdir()
    run = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{output}:/opt/ml/output", image, "train"], capture_output=True, text=True
    )
    assert run.returncode == 1
    assert "the forecasting image has no built-in program" in run.stderr and "--entry-point" in run.stderr
    assert "--entry-point" in (output / "failure").read_text()
    tools = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "",
            image,
            "sh",
            "-c",
            "python -c 'import sagemaker_training, gethostname' && ! command -v gcc",
        ],
        capture_output=True,
        text=True,
    )
    assert tools.returncode == 0, tools.stderr  # the toolkit works; the compiler stayed in the builder stage


@pytest.mark.parametrize(
    "args, message",
    [
        (["--entry-point", "no/such/train.py"], "ENTRY_POINT 'no/such/train.py' is not a file"),
        (
            ["--entry-point", "themes/forecasting/example/train.py", "--source-dir", "themes/tabular"],
            "is not inside SOURCE_DIR",
        ),
        (["--entry-point", "themes/forecasting/example/train.py", "--channel", "nonsense"], "is not name=path"),
        (
            ["--entry-point", "themes/forecasting/example/train.py", "--channel", "train=s3://b/k"],
            "local mode reads local folders",
        ),
        (["--entry-point", "themes/forecasting/example/train.py", "--hyperparameter", "=1"], "is not key=value"),
    ],
)
def test_bad_script_mode_input_is_one_line(project, args, message):
    result = subprocess.run(
        [INV, "train", "--theme", "forecasting", *args], cwd=project, capture_output=True, text=True, env=tool_env()
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_the_streamlit_image_serves_its_app_and_answers_the_health_check(project, base_image):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = tool_env(PY="3.11", BASE_IMAGE=base_image)
    result = subprocess.run(
        [INV, "app", "--check", "--port", str(port)], cwd=project, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert f"app: http://127.0.0.1:{port}/ (/_stcore/health answers ok" in result.stdout
    refused = subprocess.run([INV, "app", "--theme", "tabular"], cwd=project, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "error: theme 'tabular' is not an app theme (theme.env KIND=app): run its code with "
        "`inv train --theme tabular --entry-point FILE`"
    ]
