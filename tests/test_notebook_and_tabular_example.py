"""The seed deliverable's notebook runs green under nbclient on the registered tabular kernel (local mode), and
the tabular example (the Titanic program as a script-mode entry point) gives the same metrics in the kernel and
as a job in the tabular image.

Builds one tabular kernel (Python 3.11: it holds the SageMaker SDK and this project's package) and the tabular
image from the offline base."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import nbformat
import pytest
from conftest import INV, REPO, clone_project, example_metrics_in_kernel, free_port, tool_env, train_plain_script

NOTEBOOK = "notebooks/titanic-sagemaker.ipynb"


def code_outputs(notebook) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def test_the_committed_notebook_has_no_outputs_and_is_written_for_the_tabular_kernel():
    notebook = nbformat.read(REPO / NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    # nbformat 4.5 wants an id on every cell (a missing one is a warning on every read, an error in future versions).
    assert all(cell.get("id") for cell in json.loads((REPO / NOTEBOOK).read_text())["cells"])
    assert code_outputs(notebook) == []
    assert all(cell.execution_count is None for cell in notebook.cells if cell.cell_type == "code")
    assert notebook.metadata.kernelspec.name.startswith("tabular_")
    source = "\n".join(cell.source for cell in notebook.cells)
    assert 'TARGET = "local"' in source and "from gs_ds_env import" in source  # the package, not copies


@pytest.fixture(scope="module")
def tabular(tmp_path_factory, base_image, titanic_csv):
    root = tmp_path_factory.mktemp("tabular-notebook")
    project = clone_project(root / "project")
    env = tool_env(
        PY="3.11",
        BASE_IMAGE=base_image,
        TITANIC_CSV=str(titanic_csv),
        IMAGE_NAME="gs-ds-env-notebook-test",
        WORKING_DIR=str(root / "work"),
        JUPYTER_DATA_DIR=str(root / "jupyter"),
        SERVE_PORT=str(free_port()),
    )
    kernel = subprocess.run([INV, "kernel", "--theme", "tabular"], cwd=project, env=env, capture_output=True, text=True)
    assert kernel.returncode == 0, kernel.stderr[-3000:]
    return root, project, env


def run_records(project: Path) -> dict[Path, dict]:
    return {run_json.parent: json.loads(run_json.read_text()) for run_json in (project / "runs").glob("*/run.json")}


@pytest.mark.docker
@pytest.mark.slow
def test_the_notebook_runs_green_under_nbclient_and_leaves_the_model_and_report(tabular):
    _, project, env = tabular
    before = run_records(project)
    result = subprocess.run([INV, "notebook", "--py", "3.11"], cwd=project, env=env, capture_output=True, text=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    executed = nbformat.read(project / "runs/notebooks/titanic-sagemaker.ipynb", as_version=4)
    outputs = code_outputs(executed)
    assert [o for o in outputs if o.output_type == "error"] == []
    assert all(cell.execution_count for cell in executed.cells if cell.cell_type == "code")
    (run_dir,) = set(run_records(project)) - set(before)
    record = run_records(project)[run_dir]
    assert record["target"] == "local" and record["kernel"] == "tabular_311"
    assert record["parity"]["checked"] and record["parity"]["differences"] == []
    # Run from a kernel that lives on: the kernel's age is no step of the run (under `inv` the process's start-up is).
    assert "start-up (inv, imports, settings)" not in record["timings"] and "train" in record["timings"]
    with tarfile.open(record["model_artifact"]) as archive:
        assert {"model.joblib", "metrics.json"} <= set(archive.getnames())
    assert (run_dir / "report.md").is_file()
    shown = "".join(str(o.get("data", {}).get("text/markdown", "")) + o.get("text", "") for o in outputs)
    assert f"| validation:auc | {record['metrics']['validation:auc']} |" in shown
    assert record["model_artifact"] in shown
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the ROC curve and the confusion matrix
    # The last section serves the model in local mode: the endpoint's answers give the run's validation AUC.
    auc = record["metrics"]["validation:auc"]
    assert f"served validation AUC {auc} (training run: {auc})" in shown
    assert not (project / NOTEBOOK).read_text().count('"output_type"')  # the committed copy stays clean


@pytest.mark.docker
@pytest.mark.slow
def test_a_failing_cell_is_one_line_naming_it_and_the_executed_copy(tabular, tmp_path):
    _, project, env = tabular
    broken = tmp_path / "broken.ipynb"
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('boom in a cell')")],
        metadata={"kernelspec": {"name": "tabular_311", "display_name": "tabular", "language": "python"}},
    )
    nbformat.write(notebook, broken)
    result = subprocess.run(
        [INV, "notebook", "--path", str(broken), "--py", "3.11"], cwd=project, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: broken.ipynb: a cell failed with ValueError: boom in a cell")
    assert "Traceback" not in result.stderr
    executed = nbformat.read(project / "runs/notebooks/broken.ipynb", as_version=4)
    assert [o.ename for o in code_outputs(executed) if o.output_type == "error"] == ["ValueError"]


def test_a_notebook_without_its_kernel_says_how_to_make_it(tmp_path):
    project = clone_project(tmp_path / "project")
    env = tool_env(PY="3.11", WORKING_DIR=str(tmp_path / "work"), JUPYTER_DATA_DIR=str(tmp_path / "jupyter"))
    result = subprocess.run([INV, "notebook", "--py", "3.11"], cwd=project, env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: there is no Jupyter kernel tabular_311: create it with `make kernel THEME=tabular PY=3.11`"
    )


@pytest.mark.docker
@pytest.mark.slow
def test_the_tabular_example_gives_the_same_metrics_in_the_kernel_and_as_a_job(tabular):
    root, project, env = tabular
    before = run_records(project)
    job = subprocess.run(
        [INV, "train", "--theme", "tabular", "--entry-point", "themes/tabular/example/train.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert job.returncode == 0, (job.stdout + job.stderr)[-4000:]
    assert "channels: none given; the staged Titanic data (train, validation)" in job.stdout
    assert "Invoking script with the following command" in job.stdout  # the toolkit ran it, not the default
    (run_dir,) = set(run_records(project)) - set(before)
    record = run_records(project)[run_dir]
    assert record["entry_point"] == "train.py" and set(record["channels"]) == {"train", "validation"}
    with tarfile.open(record["model_artifact"]) as archive:
        assert {"model.joblib", "metrics.json"} <= set(archive.getnames())
    assert {"roc_curve.png", "confusion_matrix.png"} <= set(record["pictures"])

    folders = {name: uri.removeprefix("file://") for name, uri in record["channels"].items()}
    kernel_metrics = example_metrics_in_kernel(
        project,
        "tabular",
        root / "kernel-model",
        *("--train", folders["train"], "--validation", folders["validation"]),
        *("--output-data-dir", str(root / "kernel-output")),
    )
    assert record["metrics"] == kernel_metrics and kernel_metrics["validation:auc"] > 0.8


@pytest.mark.docker
@pytest.mark.slow
def test_a_plain_sagemaker_script_runs_unchanged_in_the_tabular_image(tabular):
    """examples/bring-your-script on the staged Titanic channels: its printed metrics are the record's, and they
    are what its formula gives on those channels' files (computed here from the files the job was given)."""
    import csv
    import math
    import statistics

    _, project, env = tabular
    record = train_plain_script(project, env, "tabular")

    def fares(channel: str) -> list[float]:
        (path,) = Path(record["channels"][channel].removeprefix("file://")).glob("*.csv")
        with path.open(newline="") as handle:
            return [float(row["Fare"]) for row in csv.DictReader(handle) if row["Fare"]]

    mean = statistics.fmean(fares("train"))
    rmse = math.sqrt(statistics.fmean((fare - mean) ** 2 for fare in fares("validation")))
    assert record["metrics"]["train:rows"] == len(fares("train")) > 600
    assert record["metrics"]["validation:rmse"] == pytest.approx(rmse, abs=1e-6)
