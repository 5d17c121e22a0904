"""Settings: `.env.example` < `.env` < environment into one typed `Settings`, every key checked once against AWS's
limits before anything runs, and the same rules in the standalone scripts (gs_ds_env/rules.env, bin/lib.sh): a bad
value is one line naming the key, from inv and from each script alike. The SageMaker SDK is imported quiet, with
telemetry off."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import INV, REPO, clone_project, copy_repo, one_line_refusal, run_inv, tool_env

from gs_ds_env.settings import ConfigError, load_settings


def test_layers_example_then_env_file_then_environment(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("THEME=tsai\nPY=3.11\nSEED=7\nTAGS=team=ds,cost-centre=42\n")
    monkeypatch.setenv("SEED", "9")
    settings = load_settings(env_file=env_file)
    assert (settings.theme, settings.py, settings.kernel_name) == ("tsai", "3.11", "tsai_311")
    assert settings.seed == 9  # the environment wins over .env
    assert settings.target == "local"  # from .env.example
    assert settings.tags == {"team": "ds", "cost-centre": "42"}
    assert settings.hyperparameters["seed"] == "9"


@pytest.mark.parametrize(
    "content, message",
    [
        ("PY=3\n", "PY='3' is malformed"),
        ("THEME=nope\n", "THEME='nope' does not exist under themes/"),
        ("SEED=abc\n", "SEED='abc' is not a valid int"),
        ("TARGET=cloud\n", "TARGET='cloud' is malformed"),
        ("TARGET=sagemaker\nS3_BUCKET=\n", "S3_BUCKET is missing"),
        (
            "TARGET=sagemaker\nS3_BUCKET=my-bucket\nSAGEMAKER_ROLE_ARN=admin\n",
            "SAGEMAKER_ROLE_ARN='admin' is malformed",
        ),
        (
            "TARGET=sagemaker\nS3_BUCKET=my-bucket\nSAGEMAKER_ROLE_ARN=arn:aws:iam::123456789012:role/x\n"
            "USE_SPOT=true\nMAX_RUN=100\nMAX_WAIT=50\n",
            "MAX_WAIT=50 must be >= MAX_RUN=100",
        ),
        ("TAGS=justakey\n", "TAGS item 'justakey' is not key=value"),
    ],
)
def test_bad_settings_name_the_key(tmp_path, monkeypatch, content, message):
    for key in ("PY", "THEME", "SEED", "TARGET", "S3_BUCKET", "SAGEMAKER_ROLE_ARN", "TAGS"):
        monkeypatch.delenv(key, raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(env_file=env_file)


def test_inv_reports_bad_settings_as_one_line(tmp_path):
    result = subprocess.run(
        [str(REPO / ".venv/bin/inv"), "deploy", "--dry-run"],
        cwd=clone_project(tmp_path / "project"),
        capture_output=True,
        text=True,
        env=tool_env(PY="3"),
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: PY='3' is malformed: expected of the form 3.N or 3.NN, e.g. 3.12"


def test_sagemaker_sdk_is_quiet_and_telemetry_opted_out():
    import boto3

    from gs_ds_env.sdk import SDK_CONFIG, sagemaker

    sdk = sagemaker()
    assert sdk.__version__.startswith("2.")
    from sagemaker.config.config_schema import TELEMETRY_OPT_OUT_PATH
    from sagemaker.utils import resolve_value_from_config

    session = sdk.session.Session(boto_session=boto3.Session(region_name="us-east-1"), sagemaker_config=SDK_CONFIG)
    assert (
        resolve_value_from_config(None, TELEMETRY_OPT_OUT_PATH, default_value=False, sagemaker_session=session) is True
    )
    probe = subprocess.run(
        [str(REPO / ".venv/bin/python"), "-c", "from gs_ds_env.sdk import sagemaker; sagemaker()"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert "v2" not in probe.stderr and "deprecation" not in probe.stderr.lower()


def test_the_sdk_checks_the_project_config_never_at_run_time_and_any_other_config_always(monkeypatch):
    """The SDK validated its config against its whole JSON schema at every lookup (7.8 s of a warm local run)."""
    import boto3
    import jsonschema
    from sagemaker.config.config import validate_sagemaker_config as sdk_validate

    from gs_ds_env.sdk import SDK_CONFIG, name_from_base, sagemaker

    sdk = sagemaker()
    sdk_validate(SDK_CONFIG)  # the project's config is valid by the SDK's own check (raises otherwise)
    calls = []
    real = jsonschema.validate
    monkeypatch.setattr(jsonschema, "validate", lambda *args, **kwargs: calls.append(args) or real(*args, **kwargs))
    ours = sdk.session.Session(boto_session=boto3.Session(region_name="us-east-1"), sagemaker_config=SDK_CONFIG)
    for _ in range(3):
        sdk.utils.get_sagemaker_config_value(ours, "SageMaker.PythonSDK.Modules.TelemetryOptOut")
    assert calls == []
    other = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": "yes"}}}}
    with pytest.raises(jsonschema.ValidationError):
        sdk.utils.get_sagemaker_config_value(None, "SageMaker", sagemaker_config=other)
    assert len(calls) == 1
    # The job name helper that spares `inv deploy` the SDK's import has the SDK's shape and length.
    theirs, mine = sdk.utils.name_from_base("b" * 70), name_from_base("b" * 70)
    assert len(mine) == len(theirs) == 63 and mine[:39] == theirs[:39]
    assert re.fullmatch(r"b{39}-\d{4}(-\d\d){5}-\d{3}", mine), mine


def test_the_sdk_loads_without_jsonschemas_iri_grammar_and_still_validates_other_configs():
    """rfc3987_syntax (installed here with jupyter_server) builds a grammar at import: ~1 s of the SDK's import."""
    from importlib.metadata import version

    assert version("rfc3987-syntax")  # installed: leaving it out of the process is what is tested
    program = """
import sys
from gs_ds_env.sdk import SDK_CONFIG, sagemaker
sagemaker()
import jsonschema
from sagemaker.config.config import validate_sagemaker_config
validate_sagemaker_config(SDK_CONFIG)
try:
    validate_sagemaker_config({"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": 1}}}})
except jsonschema.ValidationError:
    print("other config refused")
print("rfc3987_syntax:", sys.modules.get("rfc3987_syntax", "absent"))
"""
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines()[-2:] == ["other config refused", "rfc3987_syntax: None"]


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


@pytest.mark.parametrize(
    "value, fine",
    [("team/titanic-run", True), ("a*", False), ("team/*", False), ("a\nb", False), ("team/../x", False),
     ("team//x", False), ("/team", False), ("$HOME", False), ("x" * 201, False)],
)  # fmt: skip
def test_s3_prefix_is_a_plain_key_prefix(value, fine):
    values = dict(target="sagemaker", s3_bucket="team-bucket", sagemaker_role_arn="arn:aws:iam::123456789012:role/r")
    if fine:
        assert load_settings(repo_root=REPO, s3_prefix=value, **values).s3_prefix == value
    else:
        with pytest.raises(ConfigError, match="S3_PREFIX=.* is malformed"):
            load_settings(repo_root=REPO, s3_prefix=value, **values)


@pytest.mark.parametrize(
    "line, named",
    [("MAX_DEPTH 500\n", "line 2 (key MAX_DEPTH) is not KEY=value"), ('SEED="42\n', "line 2 (key SEED)")],
)
def test_a_malformed_env_line_is_refused_naming_line_and_key(copy, line, named):
    env_file = copy / ".env"
    env_file.write_text("THEME=tabular\n" + line + "PY=3.12\n")
    try:
        one_line_refusal(run_inv(copy, "deploy", "--dry-run"), f"{env_file} {named}")
    finally:
        env_file.unlink()


def test_a_non_utf8_env_is_one_line_and_doctor_json_is_still_json(copy):
    env_file = copy / ".env"
    env_file.write_bytes(b"THEME=tabular\nTAGS=caf\xe9=1\n")
    try:
        one_line_refusal(run_inv(copy, "deploy", "--dry-run"), f"{env_file} line 2 is not UTF-8 text")
        report = run_inv(copy, "doctor", "--json")
        assert report.returncode == 2
        document = json.loads(report.stdout)
        assert document["ok"] is False and "not UTF-8" in document["error"]
    finally:
        env_file.unlink()


def test_image_name_is_checked_before_any_build(copy):
    one_line_refusal(run_inv(copy, "build", IMAGE_NAME="Probe_GS"), "IMAGE_NAME='Probe_GS' is malformed")
