"""Hardening: bad input refused the same way by the settings and the standalone scripts, nothing written where it
must not be, hung services bounded, data verified by content, only this project's kernels removed."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import INV, REPO, clone_project, copy_repo, tool_env
from jupyter_client.kernelspec import KernelSpecManager

from gs_ds_env import aws, data
from gs_ds_env.job.training_job import hint_for, read_metrics_json, saved_files
from gs_ds_env.kernel.kernels import KernelError, remove_kernel
from gs_ds_env.settings import ConfigError, load_settings

SETTING_KEYS = (
    "THEME",
    "PY",
    "TORCH_BACKEND",
    "AWS_REGION",
    "ECR_REPOSITORY",
    "TARGET",
    "S3_BUCKET",
    "SAGEMAKER_ROLE_ARN",
    "WORKING_DIR",
    "BASE_JOB_NAME",
    "TAGS",
    "SEED",
    "ECR_REGISTRY",
)


@pytest.fixture
def clean_env(monkeypatch):
    for key in SETTING_KEYS + ("MAX_RUN", "MAX_WAIT", "VOLUME_SIZE", "LEARNING_RATE", "MAX_DEPTH", "N_ESTIMATORS"):
        monkeypatch.delenv(key, raising=False)


def settings_refusal(tmp_path: Path, content: str) -> str:
    env_file = tmp_path / "bad.env"
    env_file.write_text(content)
    with pytest.raises(ConfigError) as refused:
        load_settings(env_file=env_file)
    return str(refused.value)


SAGEMAKER = "TARGET=sagemaker\nS3_BUCKET=my-bucket\nSAGEMAKER_ROLE_ARN=arn:aws:iam::123456789012:role/x\n"
KERNEL = "gs-env-create-kernel.sh"
PUSH = "gs-env-docker-build-push.sh"


def script_args(script: str, key: str, value: str) -> list[str]:
    """The standalone script's arguments with one value replaced by the bad one."""
    if script == KERNEL:
        theme, py, backend = "tabular", "3.12", "none"
        theme, py, backend = {
            "THEME": (value, py, backend),
            "PY": (theme, value, backend),
            "TORCH_BACKEND": (theme, py, value),
        }[key]
        return [theme, py, "", backend]
    args = {
        "THEME": "tabular",
        "PY": "3.12",
        "TORCH_BACKEND": "none",
        "AWS_REGION": "us-east-1",
        "ECR_REPOSITORY": "gs-ds-env-tabular",
    }
    args[key] = value
    return [
        "--no-push",
        "--dry-run",
        "--py",
        args["PY"],
        "--torch-backend",
        args["TORCH_BACKEND"],
        "--base-image",
        "python:3.12-slim",
        args["THEME"],
        "123456789012",
        args["AWS_REGION"],
        args["ECR_REPOSITORY"],
        "t1",
    ]


# key, bad value, the .env around it, the scripts that take the same value
SHARED_REFUSALS = [
    ("THEME", "Bad;rm", "", (KERNEL, PUSH)),
    ("THEME", "t" * 5000, "", (KERNEL, PUSH)),
    # One theme-name rule everywhere: the kernel name's '_' separates theme and Python; 32 characters leave room
    # in SageMaker's 63 (these three passed the settings and the scripts before, and no kernel could carry them).
    ("THEME", "my_theme", "", (KERNEL, PUSH)),
    ("THEME", "a--b", "", (KERNEL, PUSH)),
    ("THEME", "t" * 33, "", (KERNEL, PUSH)),
    ("PY", "3.1x", "", (KERNEL, PUSH)),
    ("PY", "3.10", "", (KERNEL,)),
    ("TORCH_BACKEND", "cu1", "", (KERNEL, PUSH)),
    ("AWS_REGION", "mars-1", "", (PUSH,)),
    ("ECR_REPOSITORY", "a", SAGEMAKER, (PUSH,)),
]


@pytest.mark.parametrize(
    "key, value, context, scripts", SHARED_REFUSALS, ids=[f"{k}={v[:12]}" for k, v, _, _ in SHARED_REFUSALS]
)
def test_settings_and_scripts_refuse_the_same_bad_value(tmp_path, clean_env, key, value, context, scripts):
    python_line = settings_refusal(tmp_path, f"{context}{key}={value}\n")
    assert value[:40] in python_line and "\n" not in python_line
    repo = copy_repo(tmp_path / "repo", "bin", "themes", "docker")
    env = tool_env(WORKING_DIR=str(tmp_path / "work"), JUPYTER_DATA_DIR=str(tmp_path / "jupyter"))
    for script in scripts:
        result = subprocess.run(
            [str(repo / "bin" / script), *script_args(script, key, value)], capture_output=True, text=True, env=env
        )
        assert result.returncode == 2, (script, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and value[:40] in result.stderr, (script, result.stderr)
    assert not (tmp_path / "work").exists(), "a refused value must create nothing"


@pytest.mark.parametrize("region", ["eu-west-1", "us-gov-west-1", "us-isob-east-1", "cn-north-1"])
def test_settings_and_the_push_script_accept_the_same_regions(tmp_path, clean_env, region):
    """The other half of the shared rules: what settings accept, the standalone push script accepts too (it once
    refused the -iso partitions' regions)."""
    repo = copy_repo(tmp_path / "repo", "bin", "themes", "docker", ".dockerignore", ".env.example")
    env_file = tmp_path / "region.env"
    env_file.write_text(f"AWS_REGION={region}\n")
    assert load_settings(repo_root=repo, env_file=env_file).aws_region == region
    pushed = subprocess.run(
        [str(repo / "bin" / PUSH), "--dry-run", "--py", "3.12", "tabular", "123456789012", region, "gs-ds-env-tabular",
         "t1"],
        capture_output=True, text=True, env=tool_env(WORKING_DIR=str(tmp_path / "work")),
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    # The China regions' ECR endpoints are under amazonaws.com.cn.
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    assert f"IMAGE_URI=123456789012.dkr.ecr.{region}.{domain}/gs-ds-env-tabular:t1-" in pushed.stdout


@pytest.mark.parametrize(
    "content, message",
    [
        ("SEED=-1\n", "SEED=-1 is out of range"),
        ("LEARNING_RATE=nan\n", "LEARNING_RATE=nan is out of range"),
        ("MAX_DEPTH=-1\n", "MAX_DEPTH=-1 is out of range"),
        ("N_ESTIMATORS=0\n", "N_ESTIMATORS=0 is out of range"),
        ("MAX_RUN=0\n", "MAX_RUN=0 is out of range"),
        ("MAX_RUN=2419201\n", "MAX_RUN=2419201 is out of range: expected seconds, 1-2419200"),
        ("VOLUME_SIZE=100000\n", "VOLUME_SIZE=100000 is out of range"),
        ("TAGS=aws:owner=me\n", "uses the prefix 'aws:', which AWS reserves"),
        (f"TAGS={'k' * 129}=v\n", "keys may have at most 128 characters"),
        (f"TAGS=k={'v' * 257}\n", "values 256"),
        ("TAGS=team=a,team=b\n", "TAGS has the key 'team' twice"),
        (SAGEMAKER.replace("my-bucket", "my..bucket"), "S3_BUCKET='my..bucket' is malformed"),
        (SAGEMAKER.replace("my-bucket", "192.168.1.10"), "S3_BUCKET='192.168.1.10' is malformed"),
        (
            SAGEMAKER + "ECR_REGISTRY=https://registry.example.com/v2\n",
            "ECR_REGISTRY='https://registry.example.com/v2' is not a registry host",
        ),
        ("BASE_JOB_NAME=../escape\n", "BASE_JOB_NAME='../escape' is malformed"),
        ("BASE_JOB_NAME=a/b\n", "BASE_JOB_NAME='a/b' is malformed"),
        ("AWS_REGION=moon\n", "AWS_REGION='moon' is malformed"),
        ("WORKING_DIR=relative/dir\n", "WORKING_DIR='relative/dir' is not an absolute path"),
        ("WORKING_DIR=$HOME/x\n", "WORKING_DIR='$HOME/x' is not an absolute path"),
    ],
)
def test_every_key_is_checked_against_aws_limits_before_anything_runs(tmp_path, clean_env, content, message):
    assert message in settings_refusal(tmp_path, content)


def test_an_out_of_range_value_is_one_line_from_inv(project):
    result = subprocess.run(
        [INV, "deploy", "--dry-run"], cwd=project, capture_output=True, text=True, env=tool_env(MAX_RUN="0")
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: MAX_RUN=0 is out of range: expected seconds, 1-2419200 (SageMaker's 28-day limit)"
    ]


# ---- standalone, the kernel script reads no .env: the project's settings do, when its venv exists ----------
def standalone(
    tmp_path: Path, env_line: str | None, with_venv: bool, home: Path
) -> tuple[Path, subprocess.CompletedProcess]:
    """The kernel script run standalone (no WORKING_DIR in its environment) in a copy with this .env line;
    --register-only with no venv stops right after WORKING_DIR is set up, so its folders show where it went."""
    repo = copy_repo(tmp_path / "repo", "bin", "themes", "docker", ".env.example")
    if env_line is not None:
        (repo / ".env").write_text(env_line)
    if with_venv:  # what `make venv` made: the project's own venv, which the script asks
        (repo / ".venv").symlink_to(REPO / ".venv")
    env = tool_env(HOME=str(home), JUPYTER_DATA_DIR=str(tmp_path / "jupyter"))
    for name in ("WORKING_DIR", "NO_SUCH_VAR", "XDG_DATA_HOME"):
        env.pop(name, None)
    result = subprocess.run(
        [str(repo / "bin" / KERNEL), "--register-only", "tabular", "3.12"], capture_output=True, text=True, env=env,
        cwd=tmp_path,
    )  # fmt: skip
    return repo, result


@pytest.mark.parametrize(
    "line, expected",
    [
        ("WORKING_DIR=${{HOME}}/wd\n", "{home}/wd"),
        ("WORKING_DIR={tmp}/wd # where caches live\n", "{tmp}/wd"),
        ("WORKING_DIR={tmp}/wd\r\n", "{tmp}/wd"),
        ("export WORKING_DIR={tmp}/wd\n", "{tmp}/wd"),
        ('WORKING_DIR="{tmp}/wd"  # quoted\n', "{tmp}/wd"),
        ("WORKING_DIR=${{NO_SUCH_VAR:-{tmp}/fallback}}\n", "{tmp}/fallback"),
    ],
)
def test_standalone_script_takes_working_dir_as_the_settings_read_it(tmp_path, clean_env, monkeypatch, line, expected):
    from dotenv import dotenv_values

    home = tmp_path / "home"
    home.mkdir()
    want = expected.format(home=home, tmp=tmp_path)
    monkeypatch.setenv("HOME", str(home))
    repo, result = standalone(tmp_path, line.format(tmp=tmp_path), with_venv=True, home=home)
    assert dotenv_values(repo / ".env")["WORKING_DIR"] == want  # the reference reading
    assert result.returncode == 2 and "missing or broken" in result.stderr, result.stderr
    assert (Path(want) / "cache/uv").is_dir(), sorted(str(p) for p in tmp_path.rglob("cache"))
    assert [p for p in tmp_path.rglob("cache") if p.parent != Path(want)] == []


def test_standalone_script_without_the_project_venv_uses_the_default_not_env(tmp_path, clean_env):
    home = tmp_path / "home"
    home.mkdir()
    _, result = standalone(tmp_path, f"WORKING_DIR={tmp_path}/from-env\n", with_venv=False, home=home)
    assert result.returncode == 2 and "missing or broken" in result.stderr, result.stderr
    default = home / ".local/share/gs-ds-env"  # the documented default (not on a notebook instance)
    assert (default / "cache/uv").is_dir() and not (tmp_path / "from-env").exists()


@pytest.mark.parametrize(
    "line, message",
    [
        ("WORKING_DIR=$HOME/x\n", "WORKING_DIR='$HOME/x' is not an absolute path"),
        ("WORKING_DIR=relative/x\n", "WORKING_DIR='relative/x' is not an absolute path"),
        ('WORKING_DIR="/tmp/unterminated\n', "line 1"),
    ],
)
def test_standalone_script_refuses_what_the_settings_refuse(tmp_path, clean_env, line, message):
    home = tmp_path / "home"
    home.mkdir()
    _, result = standalone(tmp_path, line, with_venv=True, home=home)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "relative").exists() and not (tmp_path / "$HOME").exists()
    assert not list(tmp_path.rglob("cache")), "a refused value must create nothing"


# ---- the Makefile quotes what it passes on; .gitignore keeps secrets out -----------------------------------
def test_makefile_passes_values_quoted(tmp_path):
    project = clone_project(tmp_path / "project")
    fake_venv = tmp_path / "venv"
    fake_venv.mkdir()
    (fake_venv / ".synced").touch()  # newer than uv.lock: `make` sees the tool venv as up to date
    recorder = tmp_path / "inv"
    recorder.write_text("#!/usr/bin/env python3\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    recorder.chmod(0o755)
    evil = "x'; touch pwned; echo '"
    result = subprocess.run(
        [
            "make",
            "-s",
            "deploy",
            f"VENV={fake_venv}",
            f"INV={recorder}",
            f"THEME={evil}",
            "PY=3.12; touch pwned2",
            "TARGET=`touch pwned3`",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        env=tool_env(),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [
        "deploy",
        "--theme",
        evil,
        "--py",
        "3.12; touch pwned2",
        "--target",
        "`touch pwned3`",
    ]
    assert not list(project.glob("pwned*"))


def test_gitignore_keeps_env_variants_out_but_not_the_example():
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", ".env", ".env.local", ".env.bak", ".env~", "prod.env.bak"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert ignored.stdout.split() == [".env", ".env.local", ".env.bak", ".env~", "prod.env.bak"]
    example = subprocess.run(["git", "check-ignore", "--no-index", ".env.example"], cwd=REPO, capture_output=True)
    assert example.returncode == 1


# ---- data: verified by content, bad labels refused ----------------------------------------------------------
def test_a_changed_staged_file_is_staged_again_not_trained_on(scratch_settings, capsys):
    first = data.split_and_stage(scratch_settings)
    train_csv = first.channels["train"] / "train.csv"
    original = train_csv.read_bytes()
    train_csv.write_text("".join(train_csv.read_text().splitlines(keepends=True)[:41]))  # truncated to 40 rows
    again = data.split_and_stage(scratch_settings)
    assert "is not the file staged from the verified source" in capsys.readouterr().out
    assert train_csv.read_bytes() == original
    assert again.rows == first.rows == {"train": 712, "validation": 179}
    assert (
        again.channel_sha256
        == first.channel_sha256
        == {channel: data.sha256_of(folder / f"{channel}.csv") for channel, folder in first.channels.items()}
    )
    frame = pd.read_csv(first.channels["validation"] / "validation.csv")  # flipped labels: also caught
    frame["Survived"] = 1 - frame["Survived"]
    frame.to_csv(first.channels["validation"] / "validation.csv", index=False)
    assert data.split_and_stage(scratch_settings).channel_sha256 == first.channel_sha256


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.assign(Survived=f.Survived.astype(float).where(f.index > 3)), "4 rows have no Survived label"),
        (lambda f: f.assign(Survived=f.Survived.where(f.index != 0, 2)), "Survived must be 0 or 1, found 2"),
        (lambda f: f.assign(Survived=0), "1 classes: need at least 50 rows and both classes"),
    ],
)
def test_bad_labels_are_one_line_before_training(tmp_path, titanic_csv, change, message):
    broken = tmp_path / "broken.csv"
    change(pd.read_csv(titanic_csv)).to_csv(broken, index=False)
    with pytest.raises(data.DataError, match=message):
        data.load(broken)


# ---- hung services: a frozen endpoint and a trickling download are bounded -----------------------------------
@pytest.fixture
def frozen_server():
    """Accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    for connection in held:
        connection.close()
    server.close()


def test_a_frozen_aws_endpoint_fails_with_one_line_naming_it(frozen_server, monkeypatch):
    # The shipped bound: attempts x (connect + read) stays about a minute, not botocore's 60 s read per attempt.
    attempts = aws.RETRIES.retries["total_max_attempts"]  # the first request included
    assert attempts * (aws.RETRIES.connect_timeout + aws.RETRIES.read_timeout) <= 90
    monkeypatch.setenv("AWS_ENDPOINT_URL", frozen_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    from botocore.config import Config

    monkeypatch.setattr(aws, "RETRIES", aws.RETRIES.merge(Config(read_timeout=1, connect_timeout=1)))
    import boto3

    with pytest.raises(aws.AwsError) as failed:
        aws.account_id(boto3.Session(region_name="us-east-1"))
    line = str(failed.value)
    assert "\n" not in line and frozen_server in line and "Read timeout" in line and "AWS_ENDPOINT_URL" in line


def test_a_trickling_download_stops_at_its_deadline_and_leaves_nothing(scratch_settings, monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def trickle():
        connection, _ = server.accept()
        connection.recv(4096)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 61194\r\n\r\n")
        try:
            for _ in range(60):
                connection.sendall(b"x")
                time.sleep(0.2)
        except OSError:
            pass
        connection.close()

    threading.Thread(target=trickle, daemon=True).start()
    monkeypatch.setattr(data, "DOWNLOAD_DEADLINE", 1.5)
    url = f"http://127.0.0.1:{server.getsockname()[1]}/titanic.csv"
    with pytest.raises(data.DataError, match=r"took longer than 1.5 s: stopped; set TITANIC_CSV"):
        data.fetch(scratch_settings, url)
    server.close()
    assert not list((scratch_settings.data_dir / "raw").glob("*")), "no partial file may stay"


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


def test_an_ecr_uri_in_a_log_line_does_not_trigger_the_ecr_hint():
    log = (
        "Pulled 123456789012.dkr.ecr.us-east-1.amazonaws.com/gs-ds-env:tabular_312-abc\n"
        "Traceback (most recent call last):\nValueError: bad input"
    )
    assert hint_for(log).startswith("the training program failed")
    assert hint_for("CannotPullContainerError: pull access denied").startswith("ECR auth or image")


# ---- kernel-remove touches only this project's kernels ---------------------------------------------------------
def test_kernel_remove_refuses_kernels_this_project_did_not_create(tmp_path, monkeypatch, project):
    jupyter = tmp_path / "jupyter"
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(jupyter))

    def spec(name: str, python: str) -> Path:
        folder = jupyter / "kernels" / name
        folder.mkdir(parents=True)
        (folder / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": name,
                    "language": "python",
                }
            )
        )
        return folder

    mine = spec("mine", "/usr/bin/python3")
    impostor = spec("tabular_312", "/usr/bin/python3")  # a theme kernel's name, someone else's python
    manifest = project / "themes/tabular/kernel/manifest.env"
    manifest.write_text('KERNEL_NAME="tabular_312"\nTHEME="tabular"\n')
    try:
        with pytest.raises(KernelError, match="'mine' was not created by this project"):
            remove_kernel(project, "mine", with_venv=False, dry_run=False)
        with pytest.raises(KernelError, match="runs /usr/bin/python3, not this project's venv"):
            remove_kernel(project, "tabular_312", with_venv=True, dry_run=False)
        result = subprocess.run(
            [INV, "kernel-remove", "python3"],
            cwd=project,
            capture_output=True,
            text=True,
            env=tool_env(JUPYTER_DATA_DIR=str(jupyter)),
        )
        assert result.returncode == 1 and result.stderr.strip().splitlines() == [
            "error: kernel 'python3' was not created by this project (no themes/*/kernel/manifest.env names it): "
            "refusing; `inv kernels` lists this project's kernels"
        ]
    finally:
        manifest.unlink()
    assert (mine / "kernel.json").is_file() and (impostor / "kernel.json").is_file()
    assert "python3" in KernelSpecManager().find_kernel_specs()


# ---- caches under WORKING_DIR, not ~/.cache on the root disk ------------------------------------------------
@pytest.mark.parametrize("working_dir", [None, "wd", ".env"])
def test_make_puts_uv_cache_under_working_dir(tmp_path, working_dir):
    """The Makefile has no WORKING_DIR rule of its own: the environment, else .env as the settings read it (once the
    project venv exists), else the one default, all through the kernel script's --print-working-dir."""
    project = clone_project(tmp_path / "project")
    if working_dir == ".env":
        (project / ".env").write_text(f"WORKING_DIR={tmp_path}/from-dotenv\n")
        (project / ".venv").symlink_to(REPO / ".venv")  # the project venv, only read
    home = tmp_path / "home"
    stale_venv = tmp_path / "venv"
    stale_venv.mkdir()
    recorder = tmp_path / "uv"
    recorder.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$UV_CACHE_DIR" > "$(dirname "$0")/seen"\n')
    recorder.chmod(0o755)
    env = tool_env(HOME=str(home))
    env.pop("UV_CACHE_DIR", None)
    env.pop("XDG_DATA_HOME", None)
    env.pop("WORKING_DIR", None)
    if working_dir == "wd":
        env["WORKING_DIR"] = str(tmp_path / working_dir)
    result = subprocess.run(
        ["make", "-s", "venv", f"VENV={stale_venv}", f"UV={recorder}"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    expected = {None: home / ".local/share/gs-ds-env", "wd": tmp_path / "wd", ".env": tmp_path / "from-dotenv"}
    assert (tmp_path / "seen").read_text().strip() == str(expected[working_dir] / "cache/uv")


def test_make_refuses_a_working_dir_the_settings_refuse_in_one_line(tmp_path):
    project = clone_project(tmp_path / "project")
    (project / ".env").write_text("WORKING_DIR=relative/x\n")
    (project / ".venv").symlink_to(REPO / ".venv")
    env = tool_env(HOME=str(tmp_path / "home"))
    for name in ("UV_CACHE_DIR", "WORKING_DIR"):
        env.pop(name, None)
    result = subprocess.run(["make", "-s", "help"], cwd=project, capture_output=True, text=True, env=env)
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert "WORKING_DIR='relative/x' is not an absolute path" in lines[0] and "cannot be used" in lines[1], lines
    assert len(lines) == 2 and not (project / "relative").exists()


def _stage_in_child(settings, queue):
    try:
        queue.put(data.split_and_stage(settings).channel_sha256)
    except Exception as error:  # reported to the parent, which fails the test with it
        queue.put(repr(error))


def test_concurrent_stagings_of_one_key_take_turns(scratch_settings):
    import multiprocessing

    context = multiprocessing.get_context("fork")  # the children keep the redirected data_dir
    queue = context.Queue()
    children = [context.Process(target=_stage_in_child, args=(scratch_settings, queue)) for _ in range(4)]
    for child in children:
        child.start()
    results = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join()
    assert all(isinstance(result, dict) for result in results), results
    assert all(result == results[0] for result in results)
    staged = scratch_settings.data_dir / "staged"
    assert not list(staged.glob("*.tmp")), "no half-written staging folder may stay"


# ---- no traceback for what escapes the package's own handling ----------------------------------------------------
@pytest.mark.parametrize(
    "raised, line, code",
    [
        (
            lambda: __import__("botocore.exceptions").exceptions.EndpointConnectionError(endpoint_url="http://x:1"),
            'error: an AWS call: Could not connect to the endpoint URL: "http://x:1" (no answer: check the network, '
            "the region and AWS_ENDPOINT_URL)",
            1,
        ),
        (
            lambda: __import__("botocore.exceptions").exceptions.ParamValidationError(report="Invalid bucket name"),
            "error: an AWS call: ParamValidationError: Parameter validation failed:\nInvalid bucket name",
            1,
        ),
        (
            lambda: __import__("botocore.parsers").parsers.ResponseParserError("Unable to parse response (not XML)"),
            "error: an AWS call: ResponseParserError: Unable to parse response (not XML)",
            1,
        ),
        (
            lambda: KeyboardInterrupt(),
            "error: interrupted (Ctrl-C); what finished is kept, a half-done run says INTERRUPTED",
            130,
        ),
    ],
)
def test_clear_errors_turns_escaping_exceptions_into_one_line(raised, line, code):
    from invoke import Exit

    import tasks

    @tasks.clear_errors
    def failing():
        raise raised()

    with pytest.raises(Exit) as stopped:
        failing()
    assert (stopped.value.message, stopped.value.code) == (line, code)


def test_a_garbage_answering_endpoint_is_one_line_from_inv(project, titanic_csv):
    import http.server

    class Garbage(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the handler API's name
            body = b"<<<this is not an AWS response"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = tool_env(
            TARGET="sagemaker",
            S3_BUCKET="team-bucket",
            AWS_REGION="eu-west-1",
            SAGEMAKER_ROLE_ARN="arn:aws:iam::123456789012:role/x",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.server_port}",
            TITANIC_CSV=str(titanic_csv),
        )
        result = subprocess.run(
            [INV, "data", "--target", "sagemaker"], cwd=project, env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        server.shutdown()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
