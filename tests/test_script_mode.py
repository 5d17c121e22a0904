"""Script mode: the user's code runs in a theme's image through the SageMaker training toolkit (`inv train
--entry-point`), gives the same metrics as in the theme's kernel, and a failing script is one clear line.

Runs the forecasting theme (Python 3.11, the offline base): its kernel, its image and its example. The torch
themes' examples are not built here yet (see the README).
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from conftest import (
    INV,
    PLAIN_SCRIPT,
    clone_project,
    containers_of,
    example_metrics_in_kernel,
    free_port,
    tool_env,
    wait_for_line,
)

from gs_ds_env.job.training_job import read_metrics_json, saved_files

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
    # Exactly the user's hyperparameters (none here); the project's example finds its seed in GS_SEED.
    assert record["entry_point"] == "train.py" and record["hyperparameters"] == {}
    assert record["environment"] == {"GS_SEED": "42"} and record["status"] == "completed"
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


EXAMPLE = ["--entry-point", "themes/forecasting/example/train.py"]


def test_a_plain_sagemaker_script_runs_unchanged_and_its_printed_metrics_are_recorded(forecasting, tmp_path):
    _, project, env = forecasting
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("Fare,Age\n1,10\n3,20\n")
    (data / "other.csv").write_text("Fare,Age\n1000,1\n")  # beside the channel's file: must not be shipped
    before = runs(project)
    job = train(
        project, env, "--entry-point", PLAIN_SCRIPT, "--channel", f"train={data / 'train.csv'}",
        "--hyperparameter", "target=Fare",
    )  # fmt: skip
    assert job.returncode == 0, (job.stdout + job.stderr)[-4000:]
    run_dir = new_run(project, before)
    assert run_dir.name.startswith("gs-ds-env-forecasting-train-")  # theme and entry point in the name
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["hyperparameters"] == {"target": "Fare"}
    # mean 2 of the two shipped rows: rmse 1; other.csv (Fare 1000) would have changed both
    assert record["metrics"] == {"train:rows": 2.0, "validation:rmse": 1.0}
    with tarfile.open(record["model_artifact"]) as archive:
        assert archive.getnames() == ["model.json"]  # no metrics.json, and the job still completed
    assert "validation:rmse=1.000000" in Path(record["log_path"]).read_text()
    assert "| validation:rmse | `1` |" in (run_dir / "report.md").read_text()


@pytest.mark.parametrize(
    "script, args, reason",
    [
        (
            "import sys\nprint('reading')\nsys.exit('no rows in the train channel')\n",
            [],
            "no rows in the train channel",
        ),
        (None, ["--hyperparameter", "epochs=3"], "train.py: error: unrecognized arguments: --epochs 3"),
        (
            "from sagemaker_containers.beta.framework import encoders\n",
            [],
            "No module named 'sagemaker_containers'",
        ),
    ],
    ids=["sys.exit(reason)", "argparse error", "AWS's private package"],
)
def test_a_failed_script_leaves_a_record_with_its_own_reason(forecasting, tmp_path, script, args, reason):
    _, project, env = forecasting
    entry = project / PLAIN_SCRIPT
    if script:
        entry = tmp_path / "code/train.py"
        entry.parent.mkdir()
        entry.write_text(script)
    before = runs(project)
    job = train(project, env, "--entry-point", str(entry), *args)
    assert job.returncode == 1
    last = job.stderr.strip().splitlines()[-1]
    assert last.startswith("error: local training job ") and reason in last, job.stderr[-2000:]
    if "sagemaker_containers" in reason:  # what to do, not only what happened
        assert "sagemaker_containers is private to AWS's own containers" in last and "remove that import" in last
    run_dir = new_run(project, before)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and reason in record["reason"] and record["exit_code"] == 2 - bool(script)
    assert reason in record["stderr_tail"][-1] and record["command"].startswith("inv train --theme forecasting")
    assert Path(record["log_path"]).is_file() and record["model_artifact"] == ""
    report = (run_dir / "report.md").read_text()
    assert "**Status: failed**" in report and "## What happened" in report and reason in report


def test_max_run_stops_a_hanging_local_job(forecasting, tmp_path):
    _, project, env = forecasting
    entry = tmp_path / "code/train.py"
    entry.parent.mkdir()
    entry.write_text("import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n")
    before = runs(project)
    started = time.monotonic()
    job = subprocess.run(
        [INV, "train", "--theme", "forecasting", "--entry-point", str(entry)],
        cwd=project, env={**env, "MAX_RUN": "3"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert job.returncode == 1 and time.monotonic() - started < 240
    assert "stopped: MAX_RUN=3 s reached" in job.stderr.strip().splitlines()[-1]
    record = json.loads((new_run(project, before) / "run.json").read_text())
    assert record["status"] == "stopped: max run" and "MAX_RUN=3" in record["reason"]
    assert containers_of(project) == []  # a job leaves none of its containers, running or not


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_a_local_job_as_ctrl_c_does(forecasting, tmp_path, signum):
    _, project, env = forecasting
    entry = tmp_path / "code/train.py"
    entry.parent.mkdir()
    entry.write_text("import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n")
    before = runs(project)
    log = tmp_path / "inv.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [INV, "train", "--theme", "forecasting", "--entry-point", str(entry)],
            cwd=project, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 240
        while "sleeping" not in log.read_text() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.5)
        assert "sleeping" in log.read_text(), log.read_text()[-3000:]
        process.send_signal(signum)  # to inv alone, as `timeout` or a closing terminal sends it
        assert process.wait(timeout=60) == 128 + signum
    name = signal.Signals(signum).name
    assert log.read_text().strip().splitlines()[-1].startswith(f"error: interrupted ({name})")
    run_dir = new_run(project, before)
    assert (run_dir / "INTERRUPTED").read_text().startswith(f"interrupted ({name})")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == f"interrupted ({name})"
    assert containers_of(project) == []  # a job leaves none of its containers, running or not
    compose = subprocess.run(["pgrep", "-f", str(run_dir)], capture_output=True, text=True)
    assert compose.stdout == ""  # docker-compose, which got no signal of its own, is gone too


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
        (["--entry-point", ""], "--entry-point is empty"),
        ([*EXAMPLE, "--hyperparameter", "a=1", "--hyperparameter", "a=2"], "--hyperparameter 'a' is given twice"),
        ([*EXAMPLE, "--hyperparameter", "a=" + "x" * 2501], "values of at most 2500"),
        ([*EXAMPLE, *[f"--hyperparameter=k{i}=1" for i in range(96)]], "SageMaker allows 100 per job"),
        ([*EXAMPLE, "--channel", "train=themes", "--channel", "train=examples"], "--channel 'train' is given twice"),
        ([*EXAMPLE, "--channel", "..=themes"], "is not name=path"),
        ([*EXAMPLE, "--channel", "train="], "has no path"),
        ([*EXAMPLE, "--metric-definition", "loss"], "is not name=regex"),
        ([*EXAMPLE, "--metric-definition", "loss=loss: [0-9.]+"], "exactly one (group)"),
        ([*EXAMPLE, "--metric-definition", "loss=loss: ([0-9.]+"], "is not a regular expression"),
        ([*EXAMPLE, "--job-name", "taken"], "runs/taken already exists: a run is never overwritten"),
        (["--detach"], "--detach is for TARGET=sagemaker"),
    ],
)
def test_bad_script_mode_input_is_one_line_and_starts_nothing(project, tmp_path, args, message):
    (project / "runs/taken").mkdir(parents=True, exist_ok=True)
    before = runs(project)
    result = subprocess.run(
        [INV, "train", "--theme", "forecasting", *args],
        cwd=project, capture_output=True, text=True, env=tool_env(WORKING_DIR=str(tmp_path / "work")),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert runs(project) == before and result.stdout == ""  # nothing built, nothing run


@pytest.mark.parametrize("target", ["local", "sagemaker"])
def test_a_source_dir_link_that_leaves_the_folder_is_refused_on_both_targets(project, tmp_path, target):
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("print('hi')\n")
    secret = tmp_path / "secret-credentials"
    secret.write_text("aws_secret_access_key = not-for-s3\n")
    (code / "credentials").symlink_to(secret)
    (code / "inside").symlink_to(code / "train.py")  # a link that stays inside is fine
    env = tool_env(
        WORKING_DIR=str(tmp_path / "work"), TARGET=target, S3_BUCKET="a-bucket",
        SAGEMAKER_ROLE_ARN="arn:aws:iam::123456789012:role/r", AWS_ENDPOINT_URL="http://127.0.0.1:9",
    )  # fmt: skip
    args = [INV, "train", "--theme", "forecasting", "--entry-point", str(code / "train.py")]
    for extra in ([], ["--dry-run"]):
        result = subprocess.run([*args, *extra], cwd=project, capture_output=True, text=True, env=env)
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert f"holds a link credentials -> {secret}, which leads outside it" in line
    (code / "credentials").unlink()
    plan = subprocess.run([*args, "--dry-run"], cwd=project, capture_output=True, text=True, env=env)
    assert plan.returncode == 0, plan.stderr
    assert "ships: " in plan.stdout and "2 file(s)" in plan.stdout and "inside, train.py" in plan.stdout


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


def example_run(project: Path, env: dict) -> Path:
    """A completed run of the forecasting example (the first test's, else one trained now)."""
    for run_json in sorted(runs_json for runs_json in (project / "runs").glob("*/run.json")):
        record = json.loads(run_json.read_text())
        if (
            record.get("entry_point") == "train.py"
            and record.get("status") == "completed"
            and "-train-" in record["job_name"]
            and record.get("hyperparameters") == {}
            and record["metrics"].get("validation:mae")
        ):
            return run_json.parent
    before = runs(project)
    job = train(project, env, *EXAMPLE)
    assert job.returncode == 0, (job.stdout + job.stderr)[-4000:]
    return new_run(project, before)


BROKEN_HANDLER = "import prophet  # not in the forecasting theme\n\ndef model_fn(model_dir):\n    return None\n"


def test_the_example_model_answers_with_its_own_handler_and_a_broken_handler_stops_serve(forecasting, tmp_path):
    _, project, env = forecasting
    run_dir = example_run(project, env)
    record = json.loads((run_dir / "run.json").read_text())
    with tarfile.open(record["model_artifact"]) as archive:
        assert "code/inference.py" in archive.getnames()  # the model carries its handler
    env = {**env, "SERVE_PORT": str(free_port())}
    server = subprocess.Popen(
        [INV, "serve", "--run", run_dir.name], cwd=project, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def predict(request: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [INV, "predict", "--input", str(request)], cwd=project, env=env, capture_output=True, text=True
        )

    try:
        wait_for_line(server, "answers on", 180)
        (tmp_path / "horizon.json").write_text('{"horizon": 6}')
        (tmp_path / "too-far.json").write_text('{"horizon": 0}')
        forecast = predict(tmp_path / "horizon.json")
        assert forecast.returncode == 0, forecast.stderr[-2000:]
        months = json.loads(forecast.stdout)["predictions"]
        assert [m["ds"] for m in months][:2] == ["1960-01-01", "1960-02-01"] and len(months) == 6
        assert all(m["AutoETS"] > 0 and m["SeasonalNaive"] > 0 for m in months)
        refused = predict(tmp_path / "too-far.json")
        assert refused.returncode == 1
        assert refused.stderr.strip() == "error: the endpoint answered 400: horizon 0 must be between 1 and 60 months"
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=90)[0]
    assert server.returncode == 130 and "stopped: endpoint" in output, output[-2000:]

    # The same model with a handler that cannot import: `inv serve` stops before any endpoint, with its error.
    broken = tmp_path / "broken"
    (broken / "code").mkdir(parents=True)
    (broken / "code/inference.py").write_text(BROKEN_HANDLER)
    with tarfile.open(tmp_path / "broken.tar.gz", "w:gz") as archive:
        archive.add(broken / "code", arcname="code")
    failed = subprocess.run(
        [INV, "serve", "--theme", "forecasting", "--model-data", str(tmp_path / "broken.tar.gz")],
        cwd=project, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr[-2000:]
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the model cannot be served by ") and last.endswith(
        "cannot import /opt/ml/model/code/inference.py: the package 'prophet' is not in this image: add it to the "
        "theme (its docker/requirements.txt, then inv lock)"
    )
    assert containers_of(project) == []


# ---- failures explained in one line ---------------------------------------------------------------------------
def archive_of(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return path


def test_metrics_json_is_optional_and_an_unreadable_one_is_not_a_crash(tmp_path):
    """SageMaker's contract: a model without metrics.json is a model (its metrics come from the log lines)."""
    plain = archive_of(tmp_path / "plain.tar.gz", {"model.joblib": b"abc"})
    assert saved_files(plain) == ["model.joblib"] and read_metrics_json(plain) == {}
    broken = archive_of(tmp_path / "broken.tar.gz", {"model.joblib": b"abc", "metrics.json": b"{not json"})
    assert read_metrics_json(broken) == {}
    mixed = archive_of(
        tmp_path / "mixed.tar.gz",
        {"metrics.json": json.dumps({"metrics": {"auc": 0.9, "note": "x", "ok": True}}).encode()},
    )
    assert read_metrics_json(mixed)["metrics"] == {"auc": 0.9}  # only numbers are metrics
    assert saved_files(archive_of(tmp_path / "empty.tar.gz", {})) == []  # an empty /opt/ml/model: no model
