"""Settings (.env -> one typed object) and the standalone scripts' argument checks (no Docker needed)."""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import REPO, clone_project, tool_env

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


BUILD_PUSH = str(REPO / "bin/gs-env-docker-build-push.sh")


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["nosuch", "123456789012", "us-east-1", "repo", "t"],
            "theme 'nosuch' has no themes/nosuch/docker/requirements.txt",
        ),
        (["tabular", "12345", "us-east-1", "repo", "t"], "aws_account_id '12345' must be 12 digits"),
        (["tabular", "123456789012", "mars-1", "repo", "t"], "region 'mars-1' is not an AWS region"),
        (["tabular", "123456789012", "us-east-1", "Repo!", "t"], "ecr_repo_name 'Repo!' is invalid"),
        (["tabular", "123456789012", "us-east-1", "repo", "-bad"], "unknown option '-bad'"),
        (["tabular", "123456789012", "us-east-1", "repo", "bad tag"], "tag 'bad tag' is invalid"),
        (["--py", "3", "tabular", "123456789012", "us-east-1", "repo", "t"], "python version '3' is not of the form"),
        (["--kind", "gpu", "tabular", "123456789012", "us-east-1", "repo", "t"], "kind 'gpu' is not training or app"),
    ],
)
def test_build_push_validates_before_doing_anything(args, message):
    result = subprocess.run([BUILD_PUSH, *args], capture_output=True, text=True, env=tool_env())
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_build_push_dry_run_prints_the_plan_and_content_tag():
    result = subprocess.run(
        [
            BUILD_PUSH,
            "--dry-run",
            "--py",
            "3.11",
            "--registry",
            "127.0.0.1:5000",
            "tabular",
            "123456789012",
            "eu-west-1",
            "gs-ds-env-tabular",
            "tabular_311",
        ],
        capture_output=True,
        text=True,
        env=tool_env(),
    )
    assert result.returncode == 0, result.stderr
    assert (
        "aws ecr get-login-password --region eu-west-1 | docker login --username AWS --password-stdin" in result.stderr
    )
    assert "[dry-run] would push 127.0.0.1:5000/gs-ds-env-tabular:tabular_311-" in result.stderr
    lines = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert lines["CONTENT_TAG"].startswith("tabular_311-") and len(lines["CONTENT_TAG"]) == len("tabular_311-") + 12


@pytest.mark.parametrize(
    "theme_env",
    [
        None,  # the themes as they are (tabular: training, streamlit: app)
        '# mine\nKIND="app"   # a comment\nDEFAULT_PYTHON="3.13"',  # quoted values, comments, no final newline
        "KIND=\nDEFAULT_PYTHON=3.11\n",  # an empty KIND is training
        "export KIND = 'app'\n DEFAULT_PYTHON=3.13#no space before the comment\n",  # what python-dotenv also reads
        "KIND=app streamlit\nDEFAULT_PYTHON=3.11 3.12\n",  # KIND's first word; two Pythons: refused
    ],
)
def test_standalone_build_reads_theme_env_as_the_project_does(tmp_path, theme_env):
    """inv passes --py and --kind from ThemeFiles; the script alone reads theme.env itself, and must agree."""
    from gs_ds_env.paths import Paths

    project = clone_project(tmp_path / "project")
    themes = ["tabular", "streamlit"]
    if theme_env is not None:
        (project / "themes/tabular/theme.env").write_text(theme_env)
        themes = ["tabular"]
    for theme in themes:
        files = Paths(project).theme(theme)
        env = {k: v for k, v in tool_env().items() if k not in ("PY", "BASE_IMAGE")}
        result = subprocess.run(
            [str(project / "bin/gs-env-docker-build-push.sh"), "--dry-run", "--no-push", theme, "-", "-", "repo", "t"],
            capture_output=True,
            text=True,
            env=env,
        )
        if " " in files.default_python:  # read whole, as ThemeFiles does, then refused in one line
            assert result.returncode == 2 and result.stderr.strip().splitlines() == [
                "gs-env-docker-build-push: python version '3.11 3.12' is not of the form 3.N (use --py 3.12)"
            ]
            continue
        assert result.returncode == 0, result.stderr
        toolkit = "0" if files.kind == "app" else "1"
        assert f"--build-arg PY={files.default_python} " in result.stderr, (theme, files.default_python)
        assert f"--build-arg TOOLKIT={toolkit} " in result.stderr, (theme, files.kind)


def test_shell_scripts_are_shellcheck_clean():
    scripts = sorted(str(p) for p in (REPO / "bin").glob("*.sh")) + sorted(str(p) for p in (REPO / ".ci").glob("*.sh"))
    result = subprocess.run(
        [str(REPO / ".venv/bin/shellcheck"), "-S", "style", *scripts], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_make_help_lists_every_target(tmp_path):
    project = clone_project(tmp_path / "project")
    out = subprocess.run(["make", "-s", "help"], cwd=project, capture_output=True, text=True, env=tool_env()).stdout
    for target in ("kernel", "deploy", "doctor", "test", "lint", "format", "bench"):
        assert f"\x1b[36m{target} " in out  # one help line per entry point


def test_inv_passes_the_build_script_every_value_and_gets_the_content_tag_it_gets_alone(tmp_path, monkeypatch):
    """Under inv the script parses nothing (theme.env, pins.env come resolved); the image it names is the same."""
    from gs_ds_env import image

    project = clone_project(tmp_path / "project")
    for name in ("PY", "BASE_IMAGE", "UV_VERSION", "TORCH_BACKEND", "THEME"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(repo_root=project, theme="streamlit", py="3.12")
    command = image.build_push_command(settings, push=False, dry_run=True)
    given = dict(zip(command[1:-5:2], command[2:-5:2], strict=False))
    assert given["--kind"] == "app" and given["--uv-version"] and "@sha256:" in given["--base-image"], command

    def content_tag(cmd: list[str]) -> str:
        result = subprocess.run(cmd, capture_output=True, text=True, env=tool_env())
        assert result.returncode == 0, result.stderr
        return dict(line.split("=", 1) for line in result.stdout.splitlines())["CONTENT_TAG"]

    alone = [
        command[0],
        "--dry-run",
        "--no-push",
        "--py",
        "3.12",
        "--torch-backend",
        settings.torch_backend,
        *command[-5:],
    ]
    assert content_tag(command) == content_tag(alone)


def test_what_only_the_workspace_is_built_from_leaves_the_training_tag_alone(tmp_path):
    """docker/workspace/ feeds only the workspace variant's content tag; a shared input (the Dockerfile) feeds both."""
    project = clone_project(tmp_path / "project")

    def tags() -> tuple[str, str]:
        found = []
        for variant in ([], ["--workspace"]):
            cmd = [str(project / "bin/gs-env-docker-build-push.sh"), *variant, "--dry-run", "--no-push", "--py", "3.11"]
            result = subprocess.run([*cmd, "tabular", "-", "-", "repo", "t"], capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
            found.append(dict(line.split("=", 1) for line in result.stdout.splitlines())["CONTENT_TAG"])
        return found[0], found[1]

    training, workspace = tags()
    with (project / "docker/workspace/requirements.txt").open("a") as listed:
        listed.write("# a comment is a change\n")
    training_after, workspace_after = tags()
    assert training_after == training and workspace_after != workspace
    with (project / "docker/Dockerfile").open("a") as dockerfile:
        dockerfile.write("# a comment is a change\n")
    assert all(after != before for after, before in zip(tags(), (training_after, workspace_after), strict=True))
