"""The bin/ scripts and the Makefile as primitives: the build/push script validates before it does anything, plans
its commands (--dry-run), reads theme.env and pins.env as the project does (bin/lib.sh), gets the content tag inv
gets and pushes on its own (an immutable repository: no moving tag, the login password never printed); every script
is shellcheck-clean; the Makefile lists its targets, quotes what it passes on and puts uv's cache under WORKING_DIR."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from aws_fakes import REGION
from conftest import REPO, clone_project, copy_repo, tool_env

from gs_ds_env.settings import load_settings

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
    """inv passes --py and --kind from Theme; the script alone reads theme.env itself, and must agree."""
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
        if " " in files.default_python:  # read whole, as Theme does, then refused in one line
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


# ---- caches under WORKING_DIR, not ~/.cache on the root disk ------------------------------------------------
@pytest.mark.parametrize("working_dir", [None, "wd", ".env"])
def test_make_puts_uv_cache_under_working_dir(tmp_path, working_dir):
    """The Makefile has no WORKING_DIR rule of its own: the environment, else .env as the settings read it (once the
    project venv exists), else the one default, all through bin/lib.sh working-dir."""
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


def test_both_languages_put_each_cache_where_layout_env_says(tmp_path):
    """What goes where under WORKING_DIR has one owner, gs_ds_env/layout.env: moved there, the package's paths, the
    scripts' (bin/lib.sh) and the Makefile's uv cache all move with it."""
    project = copy_repo(tmp_path / "project", "bin", "gs_ds_env", "Makefile")
    layout = project / "gs_ds_env/layout.env"
    moved = {key: f"moved/{key.lower()}" for key in ("UV_CACHE_DIR", "PIP_CACHE_DIR", "UV_PYTHON_INSTALL_DIR")}
    layout.write_text(layout.read_text() + "".join(f"{key}={value}\n" for key, value in moved.items()))
    work = tmp_path / "work"
    env = tool_env(WORKING_DIR=str(work), PYTHONPATH=str(project))
    env.pop("UV_CACHE_DIR", None)
    python = "from pathlib import Path; from gs_ds_env.paths import Paths; p = Paths(Path('.'), Path('{}'))\n"
    python += "print(p.uv_cache, p.pip_cache, p.pythons, sep='\\n')"
    package = subprocess.run(
        [sys.executable, "-c", python.format(work)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert package.returncode == 0, package.stderr
    scripts = [
        subprocess.run(
            ["bash", str(project / "bin/lib.sh"), "working-path", key], capture_output=True, text=True, env=env
        ).stdout.strip()
        for key in moved
    ]
    make = subprocess.run(
        ["make", "-s", "-f", str(project / "Makefile"), "--eval", "print-uv-cache: ; @echo $(UV_CACHE_DIR)",
         "print-uv-cache"], cwd=project, capture_output=True, text=True, env=env,
    )  # fmt: skip
    expected = [str(work / value) for value in moved.values()]
    assert package.stdout.split() == scripts == expected
    assert make.stdout.strip() == expected[0], make.stderr


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


def test_make_refuses_a_value_with_a_line_break_in_one_line(copy):
    result = subprocess.run(
        ["make", "deploy", "THEME=a\nb", "DRY_RUN=1"], cwd=copy, capture_output=True, text=True,
        env=tool_env(WORKING_DIR=str(copy.parent / "work")),
    )  # fmt: skip
    assert result.returncode == 2 and "syntax error" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert "THEME contains a line break" in line


# ---- the push script on its own: immutable tags, and the login password never printed ---------------------------
@pytest.mark.docker
def test_push_script_immutable_repository(tmp_path, moto, registry, base_image):
    repo = copy_repo(tmp_path / "repo", "bin", "docker", "training", "themes", ".dockerignore")
    env = tool_env(**moto.env(), DOCKER_CONFIG=str(tmp_path / "docker-config"))
    command = [
        str(repo / "bin/gs-env-docker-build-push.sh"),
        "--py",
        "3.11",
        "--base-image",
        base_image,
        "--registry",
        registry.host,
        "--immutable",
        "tabular",
        "123456789012",
        REGION,
        "immutable-test",
        "tabular_311",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert registry.tags("immutable-test") == [outputs["CONTENT_TAG"]]  # no moving tag on an immutable repository
    assert outputs["PUSHED"] == outputs["CONTENT_TAG"]
    assert outputs["IMAGE_DIGEST"] == registry.digest("immutable-test", outputs["CONTENT_TAG"])
    (described,) = moto.client("ecr", REGION).describe_repositories(repositoryNames=["immutable-test"])["repositories"]
    assert described["imageTagMutability"] == "IMMUTABLE" and described["imageScanningConfiguration"]["scanOnPush"]
    token = moto.client("ecr", REGION).get_authorization_token()["authorizationData"][0]["authorizationToken"]
    password = base64.b64decode(token).decode().split(":", 1)[1]
    assert password not in result.stdout + result.stderr

    again = subprocess.run(command, capture_output=True, text=True, env=env)
    assert again.returncode == 0 and "nothing to push" in again.stderr
    assert dict(line.split("=", 1) for line in again.stdout.splitlines() if "=" in line)["PUSHED"] == ""
