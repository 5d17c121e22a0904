"""Shared fixtures. Real tools everywhere: uv, Pythons from the machine, Docker, the shared Titanic CSV."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from gs_ds_env.paths import PROJECT_PACKAGE

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# This test run's own image names: another run on the same Docker daemon (a developer's, a second CI) never shares a
# tag with it. The tags go when the session ends (the layers stay, shared, in Docker's cache).
RUN_ID = uuid.uuid4().hex[:8]


def run_image(name: str) -> str:
    """An image repository name of this test run's alone: gs-ds-env-<name>-<run id>."""
    return f"gs-ds-env-{name}-{RUN_ID}"


def shared_titanic() -> Path:
    candidates = [
        os.environ.get("TITANIC_CSV_SHARED", ""),
        REPO.parent / "shared/data/titanic.csv",
        REPO.parent.parent / "shared/data/titanic.csv",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.fail("the shared Titanic CSV was not found: set TITANIC_CSV_SHARED=/path/to/titanic.csv")


@pytest.fixture(scope="session")
def titanic_csv() -> Path:
    return shared_titanic()


def python_bin_dirs() -> list[str]:
    """Directories holding python3.11 / python3.12 (pyenv installs here; elsewhere they are on PATH already)."""
    dirs = []
    for version in ("3.11", "3.12"):
        found = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin")))
        if found:
            dirs.append(found[-1])
    return dirs


# What a test's commands may inherit from the environment the tests run in: the machine's (paths, locale, Docker,
# certificates and proxies that make PyPI reachable, uv's and pip's own settings). Nothing else: a developer's
# THEME, PY, TARGET, AWS_* or WORKING_DIR must not change what a test runs.
INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TERM", "TMPDIR", "TZ", "CI",
             "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")  # fmt: skip
INHERITED_PREFIXES = ("LC_", "DOCKER_", "UV_", "PIP_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy",
                      "https_proxy", "no_proxy")  # fmt: skip


def tool_env(**extra: str) -> dict[str, str]:
    """Environment for the project's commands in a test: what INHERITED allows of this one, the project's venv (uv,
    aws, shellcheck) and real Pythons on PATH, then `extra`."""
    env = {key: value for key, value in os.environ.items() if key in INHERITED or key.startswith(INHERITED_PREFIXES)}
    uv_dirs = [str(VENV_BIN)]
    uv_tool = REPO / ".tools/uv/bin"
    if uv_tool.is_dir():
        uv_dirs.append(str(uv_tool))
    env["PATH"] = os.pathsep.join(uv_dirs + python_bin_dirs() + [env.get("PATH", "")])
    env.setdefault("UV_PYTHON_DOWNLOADS", "never" if os.environ.get("CI") else "automatic")
    env.update(extra)
    return env


# `make test` hands whole files to two workers (xdist --dist loadfile) in this order: the longest first, so the
# workers end together rather than one starting the torch images when the other is done. The rest keep theirs.
LONGEST_FIRST = (
    "test_torch_examples.py", "test_themes.py", "test_locked_themes.py", "test_workspace.py",
    "test_sagemaker_script_mode.py", "test_scripts.py", "test_script_mode.py", "test_serving_aws_scripts.py",
)  # fmt: skip


def pytest_collection_modifyitems(items) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def docker_ready() -> bool:
    return (
        shutil.which("docker") is not None and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    )


@pytest.fixture(scope="session", autouse=True)
def _remove_this_runs_image_tags():
    yield
    if docker_ready():
        tags = subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True
        )
        mine = [tag for tag in tags.stdout.split() if tag.startswith("gs-ds-env-") and f"-{RUN_ID}:" in tag]
        if mine:
            subprocess.run(["docker", "rmi", "--no-prune", *mine], capture_output=True)


@pytest.fixture(scope="session")
def docker_engine():
    """Docker tests need an engine. CI sets GS_REQUIRE_DOCKER=1, which turns a missing engine into a failure."""
    if docker_ready():
        return
    if os.environ.get("GS_REQUIRE_DOCKER"):
        pytest.fail("GS_REQUIRE_DOCKER=1 but no Docker engine answers `docker info` (run .ci/docker-setup.sh)")
    pytest.skip("no Docker engine: start dockerd (see .ci/docker-setup.sh) to run the container tests")


# The Dev Containers reference CLI (what VS Code's Dev Containers runs), installed by `make test` with npm.
DEVCONTAINER_CLI = REPO / ".tools/devcontainers/node_modules/.bin/devcontainer"


@pytest.fixture(scope="session")
def devcontainer_cli(docker_engine) -> Path:
    if DEVCONTAINER_CLI.is_file():
        return DEVCONTAINER_CLI
    if os.environ.get("GS_REQUIRE_DOCKER"):
        pytest.fail(
            f"GS_REQUIRE_DOCKER=1 but {DEVCONTAINER_CLI} is missing: `make test` installs it with npm (Node.js)"
        )
    pytest.skip("no devcontainer CLI: install Node.js's npm and run `make test` to open a dev container in the tests")


@pytest.fixture(scope="session")
def base_image(docker_engine) -> str:
    """BASE_IMAGE for test builds: $GS_TEST_BASE_IMAGE (CI: the offline Debian image), else python:3.11-slim."""
    return os.environ.get("GS_TEST_BASE_IMAGE", "python:3.11-slim")


def copy_repo(dest: Path, *parts: str) -> Path:
    """A scratch copy of the parts of the repo a script needs, so tests never touch the real tree."""
    if "themes" in parts:
        parts = tuple(dict.fromkeys((*parts, *PROJECT_PACKAGE)))
    for part in parts:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(
                src,
                dest / part,
                ignore=shutil.ignore_patterns(".venv*", "manifest.env", "__pycache__", "requirements.lock.txt"),
            )
        else:
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / part)
    return dest


INV = str(REPO / ".venv/bin/inv")


def clone_project(dest: Path) -> Path:
    """A scratch copy of the project's files (tracked, and new ones git does not ignore). `inv` run with this
    copy as its working directory imports the copy's gs_ds_env (tasks/__init__.py puts its project first on sys.path),
    so its kernels, images, data/ and runs/ belong to the copy, never to the real checkout."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture
def scratch_settings(tmp_path, titanic_csv, monkeypatch):
    """Settings built from a scratch copy of the project (its data/ is the copy's) with a scratch WORKING_DIR:
    nothing a test stages or downloads lands in the checkout."""
    from gs_ds_env.settings import load_settings

    repo = copy_repo(tmp_path / "repo", "themes", "docker", ".env.example")
    monkeypatch.setenv("WORKING_DIR", str(tmp_path / "work"))
    return load_settings(repo_root=repo, titanic_csv=str(titanic_csv))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """One scratch copy of the project per test module."""
    return clone_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """One scratch copy of the project per test module, inside a folder of its own: `run_inv` puts its WORKING_DIR
    beside it (<folder>/work), so nothing a test stages, caches or builds is shared with another module."""
    return clone_project(tmp_path_factory.mktemp("copy") / "project")


def run_inv(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`inv ARGS` in a project copy, WORKING_DIR beside it, `env` on top of the tool environment."""
    return subprocess.run(
        [INV, *args], cwd=project, env=tool_env(WORKING_DIR=str(project.parent / "work"), **env), capture_output=True,
        text=True,
    )  # fmt: skip


def one_line_refusal(result: subprocess.CompletedProcess, *expected: str, code: int = 2) -> None:
    """The command was refused with exactly one line on stderr holding each of `expected`, and no traceback."""
    assert result.returncode == code, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stdout + result.stderr
    for text in expected:
        assert text in line, line


def tree_snapshot(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*") if not p.is_symlink()}


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    """A moto_server on 127.0.0.1 recording every request (see tests/aws_fakes.py)."""
    from aws_fakes import MotoServer

    server = MotoServer(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory, docker_engine):
    """A real docker-registry on 127.0.0.1, no auth, fresh storage."""
    from aws_fakes import Registry

    server = Registry(tmp_path_factory.mktemp("registry"))
    yield server
    server.stop()
    # The local tags of what was pushed to it (<host>/<repo>:<tag>): its port is this session's alone.
    tags = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True)
    pushed = [tag for tag in tags.stdout.split() if tag.startswith(f"{server.host}/")]
    if pushed:
        subprocess.run(["docker", "rmi", "--no-prune", *pushed], capture_output=True)


def example_metrics_in_kernel(project: Path, theme: str, model_dir: Path, *args: str) -> dict:
    """Run themes/<theme>/example/train.py as a plain process in the theme's kernel venv (seed 42, as a job's
    default); the metrics it wrote to model_dir/metrics.json."""
    result = subprocess.run(
        [
            str(project / f"themes/{theme}/kernel/.venv/bin/python"),
            f"themes/{theme}/example/train.py",
            "--model-dir",
            str(model_dir),
            "--seed",
            "42",
            *args,
        ],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((model_dir / "metrics.json").read_text())["metrics"]


PLAIN_SCRIPT = "examples/bring-your-script/train.py"  # a plain SageMaker script: strict argparse, no metrics.json


def train_plain_script(project: Path, env: dict, theme: str, *args: str) -> dict:
    """examples/bring-your-script as a local-mode job in the theme's image (`inv train --entry-point`): it must
    complete with exactly the given hyperparameters (none unless `args` add some); its run record."""
    before = set((project / "runs").glob("*/run.json"))
    job = subprocess.run(
        [INV, "train", "--theme", theme, "--entry-point", PLAIN_SCRIPT, *args],
        cwd=project, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert job.returncode == 0, (job.stdout + job.stderr)[-4000:]
    (run_json,) = set((project / "runs").glob("*/run.json")) - before
    record = json.loads(run_json.read_text())
    assert record["status"] == "completed" and "--hyperparameter" not in args and record["hyperparameters"] == {}
    return record


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_line(process: subprocess.Popen, needle: str, seconds: float) -> str:
    """The process's output until a line holding `needle` (stdout and stderr merged)."""
    seen, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"no {needle!r} within {seconds} s:\n" + "".join(seen)[-3000:])


def post(port: int, body: bytes, content_type: str, accept: str | None = None) -> tuple[int, str]:
    headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def started_server(
    image: str, model_dir: Path, container_port: int = 8080, mounts: dict[str, str] | None = None, **environment: str
):
    """`docker run IMAGE serve` with the model mounted (and `mounts`, host folder -> container folder, writable), on a
    free port of 127.0.0.1, once /ping answers 200."""
    import docker

    volumes = {str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"}}
    volumes |= {host: {"bind": inside, "mode": "rw"} for host, inside in (mounts or {}).items()}
    container = docker.from_env().containers.run(
        image, ["serve"], detach=True, ports={f"{container_port}/tcp": ("127.0.0.1", None)}, environment=environment,
        volumes=volumes,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        container.reload()
        assert container.status in ("created", "running"), container.logs().decode()[-2000:]
        bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{container_port}/tcp")
        if bindings:
            port = int(bindings[0]["HostPort"])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                    if response.status == 200:
                        return container, port
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.2)
    container.remove(force=True)
    raise AssertionError("the server never answered /ping")


@pytest.fixture(scope="session")
def tabular_image(tmp_path_factory, base_image) -> str:
    """The tabular theme's image (PY=3.11), built by `inv build` in a copy of the project: the same content tag as
    every other module's copy builds, so it is built once per session."""
    project = clone_project(tmp_path_factory.mktemp("tabular-image"))
    built = subprocess.run(
        [INV, "build", "--theme", "tabular", "--py", "3.11"], cwd=project, capture_output=True, text=True,
        env=tool_env(BASE_IMAGE=base_image, WORKING_DIR=str(project.parent / "work")),
    )  # fmt: skip
    assert built.returncode == 0, (built.stdout + built.stderr)[-3000:]
    return built.stdout.split("image: ", 1)[1].split()[0]


def containers_of(project: Path) -> list:
    """The containers a project copy's commands started and left (running or exited): found by the checkout label
    every local-mode container, lab and app carries, so nothing else running on the machine is counted."""
    import docker

    return docker.from_env().containers.list(all=True, filters={"label": f"gs-ds-env.checkout={project.resolve()}"})


SECRET = f"sentinel-secret-{uuid.uuid4().hex}"


@dataclass
class LocalDeploy:
    project: Path
    root: Path
    env: dict
    result: subprocess.CompletedProcess
    run_dir: Path


@pytest.fixture(scope="session")
def local_deploy(tmp_path_factory, base_image, titanic_csv) -> LocalDeploy:
    """One real `inv deploy` (TARGET=local) in a project copy of its own, shared by the modules that check it and
    serve its model (local deploy, serving, workspace, image)."""
    root = tmp_path_factory.mktemp("local-deploy")
    project = clone_project(root / "project")
    # AWS keys in the environment must not reach the container or any file (local mode needs none).
    env = tool_env(
        PY="3.11",
        BASE_IMAGE=base_image,
        TITANIC_CSV=str(titanic_csv),
        TARGET="local",
        WORKING_DIR=str(root / "work"),
        JUPYTER_DATA_DIR=str(root / "jupyter"),
        AWS_ACCESS_KEY_ID="AKIASENTINEL0000",
        AWS_SECRET_ACCESS_KEY=SECRET,
    )
    result = subprocess.run([INV, "deploy"], cwd=project, env=env, capture_output=True, text=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (run_dir,) = list((project / "runs").glob("*"))
    return LocalDeploy(project, root, env, result, run_dir)
