"""Locked themes: each lock matches its inputs; each theme's kernel is built from its lock and passes its smoke
test; the kernel and the image agree on every version they share, or `inv parity` and `inv deploy` say which differ;
the content tag does not depend on whether the base image was already on the machine."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import INV, REPO, clone_project, copy_repo, tool_env
from dotenv import dotenv_values
from packaging.version import Version

import docker
from gs_ds_env.kernel import locks
from gs_ds_env.kernel.kernels import list_kernels
from gs_ds_env.kernel.parity import SEED, venv_environment

THEMES = ["tabular", "forecasting", "streamlit", "tsai", "cv"]
TORCH_THEMES = {"tsai", "cv"}


def public(version: str) -> str:
    return Version(version).public


@pytest.mark.slow  # uv resolves every theme's lock
def test_every_lock_matches_its_inputs_and_a_changed_input_is_caught(tmp_path):
    repo = copy_repo(tmp_path / "repo", "themes", "docker")
    for theme in THEMES:
        lock = (repo / f"themes/{theme}/requirements.lock").read_text()
        assert f"inv lock --theme {theme}" in lock.splitlines()[1], "the header says how to regenerate the lock"
        assert locks.stale(repo, theme) == [], f"themes/{theme}/requirements.lock is stale: run inv lock"
    # The check can fail: an input the lock has not seen is reported (and nothing is written).
    requirements = repo / "themes/tabular/docker/requirements.txt"
    requirements.write_text(requirements.read_text() + "tabulate>=0.9\n")
    before = (repo / "themes/tabular/requirements.lock").read_text()
    assert any(line.startswith("+ tabulate==") for line in locks.stale(repo, "tabular"))
    assert (repo / "themes/tabular/requirements.lock").read_text() == before


@pytest.fixture(scope="module")
def theme_sandbox(tmp_path_factory):
    """One scratch copy of bin/ and themes/ with one WORKING_DIR, so the five kernels share one uv cache."""
    root = tmp_path_factory.mktemp("themes")
    repo = copy_repo(root / "repo", "bin", "themes")
    env = tool_env(WORKING_DIR=str(root / "work"), JUPYTER_DATA_DIR=str(root / "jupyter"))
    return repo, env


@pytest.mark.slow
@pytest.mark.parametrize("theme", THEMES)
def test_theme_kernel_is_built_from_its_lock_and_passes_its_smoke_test(theme_sandbox, theme):
    repo, env = theme_sandbox
    # Torch themes use TORCH_BACKEND=none: torch from PyPI, the build the lock was made from. The cpu and cuNNN
    # indexes (download.pytorch.org) cannot be reached from this CI; the lock pins torch's version whichever index.
    backend = "none" if theme in TORCH_THEMES else "auto"
    result = subprocess.run(
        [str(repo / "bin/gs-env-create-kernel.sh"), theme, "3.12", "", backend], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]

    manifest = dotenv_values(repo / f"themes/{theme}/kernel/manifest.env")
    assert manifest["SMOKE"].startswith(f"smoke {theme}: ok"), manifest["SMOKE"]
    lock = repo / f"themes/{theme}/requirements.lock"
    assert manifest["LOCK_SHA256"] == locks.sha256(lock)

    # The venv holds exactly the lock's pins for this Python (the training toolkit's aside, which only the image
    # installs): every package at the lock's version, nothing else.
    installed = venv_environment(repo / f"themes/{theme}/kernel/.venv")
    pins = locks.pinned(lock, installed.python)
    expected = locks.kernel_pins(repo, theme, installed.python)
    assert all(pins[name] == version for name, version in expected.items())
    # The tabular kernel also holds this project, installed editable (theme.env KERNEL_WITH_PROJECT), not locked.
    project = {"gs-ds-env"} if theme == "tabular" else set()
    assert project <= set(installed.packages)
    assert {name: public(v) for name, v in installed.packages.items() if name not in SEED | project} == {
        name: public(v) for name, v in expected.items() if name not in SEED
    }
    if theme != "streamlit":
        assert "sagemaker-training" in pins and "sagemaker-training" not in installed.packages

    (row,) = [row for row in list_kernels(repo) if row.theme == theme]
    assert row.smoke == "passed" and row.status == "ok"


@pytest.mark.slow
def test_kernels_smoke_now_reruns_the_test_and_reports_a_failure(theme_sandbox):
    repo, _ = theme_sandbox
    if not (repo / "themes/tabular/kernel/.venv").is_dir():
        pytest.fail("the tabular kernel of the parametrized test above is missing")
    (row,) = list_kernels(repo, smoke_now=True, theme="tabular")  # the other themes' smoke tests are not run
    assert row.smoke == "passed"
    smoke = repo / "themes/tabular/smoke.py"
    good = smoke.read_text()
    smoke.write_text("raise SystemExit('broken on purpose')\n")
    try:
        (row,) = list_kernels(repo, smoke_now=True, theme="tabular")
    finally:
        smoke.write_text(good)
    assert row.smoke == "FAILED (broken on purpose)"


@pytest.mark.docker
@pytest.mark.slow
def test_parity_zero_then_drift_refused_then_allowed_and_recorded(tmp_path, base_image, titanic_csv):
    project = clone_project(tmp_path / "project")
    env = tool_env(
        PY="3.11",
        BASE_IMAGE=base_image,
        TITANIC_CSV=str(titanic_csv),
        TARGET="local",
        IMAGE_NAME="gs-ds-env-parity-test",
        WORKING_DIR=str(tmp_path / "work"),
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter"),
    )

    def inv(*args: str):
        return subprocess.run([INV, *args], cwd=project, env=env, capture_output=True, text=True)

    assert inv("kernel").returncode == 0
    same = inv("parity")
    assert same.returncode == 0, same.stdout + same.stderr
    lock = project / "themes/tabular/requirements.lock"
    pandas = locks.pinned(lock, "3.11.0")["pandas"]
    assert any(line.split()[:3] == ["pandas", pandas, pandas] for line in same.stdout.splitlines())
    assert same.stdout.strip().endswith("0 differences")

    # The user's `%pip install pandas==2.3.3` in the notebook.
    venv = project / "themes/tabular/kernel/.venv"
    subprocess.run(
        [locks.uv_binary(project), "pip", "install", "--quiet", "--python", str(venv / "bin/python"), "pandas==2.3.3"],
        check=True,
        env={**env, "UV_CACHE_DIR": str(tmp_path / "work/cache/uv")},
    )
    drift = f"pandas 2.3.3 (kernel) != {pandas} (image)"

    def error_lines(result) -> list[str]:  # (the build script's progress lines on stderr are not errors)
        assert "Traceback" not in result.stdout + result.stderr
        return [line for line in result.stderr.splitlines() if line.startswith("error:")]

    refused = inv("parity")
    assert refused.returncode == 1
    assert error_lines(refused) == [
        f"error: kernel tabular_311 and image gs-ds-env-parity-test:"
        f"{refused.stderr.split('parity-test:', 1)[1].split(' ')[0]} differ in "
        f"1 package(s): {drift}"
    ]

    stopped = inv("deploy")
    assert stopped.returncode == 1
    (line,) = error_lines(stopped)
    assert drift in line and "--allow-drift" in line
    assert "==> train" not in stopped.stdout and not (project / "runs").exists()

    allowed = inv("deploy", "--allow-drift")
    assert allowed.returncode == 0, (allowed.stdout + allowed.stderr)[-3000:]
    assert "warning: kernel tabular_311 and image" in allowed.stdout and drift in allowed.stdout
    (run_dir,) = (project / "runs").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["parity"]["allowed_drift"] is True
    assert record["parity"]["differences"] == [{"name": "pandas", "kernel": "2.3.3", "image": pandas}]
    assert "**Drift allowed (--allow-drift)**" in (run_dir / "report.md").read_text()

    # Everything a third person needs to rebuild the image, in the record and the report.
    versions = record["versions"]
    assert versions["python"].startswith("3.11.")
    assert versions["lock"] == "themes/tabular/requirements.lock" and versions["lock_sha256"] == locks.sha256(lock)
    assert versions["base_image"] == base_image and versions["base_image_id"].startswith("sha256:")
    assert versions["image_packages"]["pandas"] == pandas
    assert versions["image_packages"]["scikit-learn"] == locks.pinned(lock, versions["python"])["scikit-learn"]
    assert versions["sagemaker_sdk"].startswith("2.") and versions["uv"] and versions["docker"]
    assert versions["uv_in_image"] == locks.pins(project)["UV_VERSION"]
    report = (run_dir / "report.md").read_text()
    for needle in ("## Versions", versions["lock_sha256"], base_image, f"pandas=={pandas}"):
        assert needle in report


@pytest.mark.docker
@pytest.mark.slow
def test_content_tag_is_stable_when_the_base_image_was_not_on_the_machine(tmp_path, base_image, registry):
    client = docker.from_env()
    # A base image only this test knows: the offline base plus a unique label, pushed to the local registry, pinned
    # by its digest, and removed from this machine, as a user's machine that never pulled python:3.X-slim.
    marker = uuid.uuid4().hex[:12]
    built, _ = client.images.build(
        fileobj=io.BytesIO(f"FROM {base_image}\nLABEL gs-test-base={marker}\n".encode()),
        tag=f"{registry.host}/gs-test-base:{marker}",
    )
    client.images.push(f"{registry.host}/gs-test-base", tag=marker)
    pinned = f"{registry.host}/gs-test-base@{registry.digest('gs-test-base', marker)}"
    client.images.remove(built.id, force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(pinned)

    repo = copy_repo(tmp_path / "repo", "bin", "docker", "training", "themes", ".dockerignore")
    command = [
        str(repo / "bin/gs-env-docker-build-push.sh"),
        "--no-push",
        "--py",
        "3.11",
        "--base-image",
        pinned,
        "tabular",
        "-",
        "-",
        "gs-ds-env-tag-test",
        "tabular_311",
    ]
    first = subprocess.run(command, capture_output=True, text=True, env=tool_env())
    assert first.returncode == 0, first.stderr[-3000:]
    assert client.images.get(pinned).labels["gs-test-base"] == marker  # the build pulled it
    second = subprocess.run(command, capture_output=True, text=True, env=tool_env())
    tag = [line for line in first.stdout.splitlines() if line.startswith("CONTENT_TAG=")]
    assert tag and tag == [line for line in second.stdout.splitlines() if line.startswith("CONTENT_TAG=")]
    assert "is up to date" in second.stderr
    image = client.images.get("gs-ds-env-tag-test:tabular_311")
    assert image.labels["gs-ds-env.base-image"] == pinned
    assert image.labels["gs-ds-env.lock-sha256"] == locks.sha256(repo / "themes/tabular/requirements.lock")

    # The same base by its tag alone (unpinned), not on this machine either: pulled first and counted by its Id,
    # so the first build (before the base is here) and the second give one tag, not two (a fresh machine would
    # otherwise push the same content under a new tag). Same content as above: the layers come from the cache.
    unpinned = f"{registry.host}/gs-test-base:{marker}"
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(unpinned)
    by_tag = [*command[:5], unpinned, *command[6:]]
    first = subprocess.run(by_tag, capture_output=True, text=True, env=tool_env())
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"base image {unpinned} is not pinned by digest and not here: pulling it" in first.stderr
    second = subprocess.run(by_tag, capture_output=True, text=True, env=tool_env())
    tag = [line for line in first.stdout.splitlines() if line.startswith("CONTENT_TAG=")]
    assert tag and tag == [line for line in second.stdout.splitlines() if line.startswith("CONTENT_TAG=")]
    assert "is up to date" in second.stderr


@pytest.mark.docker
@pytest.mark.slow
def test_behind_a_tls_inspecting_proxy_the_build_trusts_the_ca_given_in_build_ca_bundle(tmp_path, base_image):
    """This network re-signs TLS, as a corporate proxy does. A base image that does not trust the proxy's CA
    fails to install anything; BUILD_CA_BUNDLE (the proxy's CA file) makes pip and uv in the build stages trust
    it. The app theme (no toolkit stage) keeps this to one small install."""
    proxy_cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    if not proxy_cas:
        pytest.skip("this machine's network does not re-sign TLS: there is no proxy CA to leave out")
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text("".join(path.read_text() for path in proxy_cas))
    client = docker.from_env()
    marker = uuid.uuid4().hex[:12]  # a base (and so a content tag) no earlier run built: nothing is up to date
    naive = f"gs-test/no-proxy-ca:{marker}"
    client.images.build(
        fileobj=io.BytesIO(
            f"FROM {base_image}\nLABEL gs-test-run={marker}\nRUN rm -f /usr/local/share/ca-certificates/*.crt "
            "&& update-ca-certificates --fresh >/dev/null\n".encode()
        ),
        tag=naive,
        rm=True,
    )
    repo = copy_repo(tmp_path / "repo", "bin", "docker", "training", "themes", ".dockerignore")
    command = [str(repo / "bin/gs-env-docker-build-push.sh"), "--no-push", "--py", "3.11", "--base-image", naive,
               "streamlit", "-", "-", "gs-ds-env-ca-test", "streamlit_311"]  # fmt: skip
    try:
        refused = subprocess.run(command, capture_output=True, text=True, env=tool_env())
        assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stdout + refused.stderr
        trusted = subprocess.run(
            command, capture_output=True, text=True, env=tool_env(BUILD_CA_BUNDLE=str(bundle)), timeout=900
        )
        assert trusted.returncode == 0, (trusted.stdout + trusted.stderr)[-3000:]
        # Only the build trusted it: the image's own store is the base's.
        store = client.containers.run(
            "gs-ds-env-ca-test:streamlit_311", ["ls", "/usr/local/share/ca-certificates"], entrypoint=[], remove=True
        )
        assert store.decode().strip() == ""
    finally:
        for image in client.images.list(name="gs-ds-env-ca-test") + client.images.list(name=naive):
            for reference in image.tags:
                with contextlib.suppress(docker.errors.DockerException):
                    client.images.remove(reference, force=True)


def test_a_pin_that_forks_inside_one_python_minor_is_found():
    # tsai's lock once had these: its kernel (Python 3.11.7) and its image (Debian's 3.11.2) got different soupsieves.
    text = (
        "soupsieve==2.10 ; python_full_version < '3.11.5'\n    # via beautifulsoup4\n"
        "soupsieve==4.1.3 ; python_full_version >= '3.11.5'\n    # via beautifulsoup4\n"
        "numpy==2.4.6 ; python_full_version < '3.12'\nnumpy==2.5.5 ; python_full_version >= '3.12'\n"
    )
    assert locks.patch_level_forks(text) == {"soupsieve": "2.10"}


@pytest.mark.parametrize("theme", THEMES)
def test_every_lock_pins_one_version_per_python_minor(theme):
    """`inv lock` re-locks a pin that forks inside a minor: kernel and image agree whatever their patch releases."""
    assert locks.patch_level_forks((REPO / f"themes/{theme}/requirements.lock").read_text()) == {}
