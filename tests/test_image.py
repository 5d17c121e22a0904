"""The theme image built by the build script with real Docker: the SageMaker container contract, layer caching (a
training/ change rebuilds one layer), a failed build keeps the last good image, and its package list is made once per
image id."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import copy_repo, run_image, tool_env

import docker

pytestmark = [pytest.mark.docker, pytest.mark.slow]


REPOSITORY = run_image("test")


def build(repo: Path, base_image: str, *extra: str, py: str = "3.11"):
    return subprocess.run(
        [
            str(repo / "bin/gs-env-docker-build-push.sh"),
            "--no-push",
            "--py",
            py,
            "--base-image",
            base_image,
            *extra,
            "tabular",
            "-",
            "-",
            REPOSITORY,
            "tabular_311",
        ],
        capture_output=True,
        text=True,
        env=tool_env(),
    )


def outputs(result) -> dict[str, str]:
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def test_image_contract_layers_and_failed_builds(tmp_path, base_image):
    repo = copy_repo(tmp_path / "repo", "bin", "docker", "training", "themes", ".dockerignore")
    client = docker.from_env()
    program = repo / "training/titanic/__init__.py"

    # Inputs never built before, so this build really runs and leaves its stages' layers for the cache check below
    # (an image with these inputs left by an earlier run would make it "up to date" even after its build stages
    # were pruned as dangling images, and the cache check would then test nothing but that prune).
    program.write_text(f"{program.read_text()}# first {uuid.uuid4()}\n")
    first = build(repo, base_image)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "building" in first.stderr
    image = client.images.get(f"{REPOSITORY}:tabular_311")
    assert image.labels["gs-ds-env.content-tag"] == outputs(first)["CONTENT_TAG"]
    assert image.attrs["Config"]["Env"] and "PYTHONUNBUFFERED=1" in image.attrs["Config"]["Env"]

    # SageMaker runs `docker run IMAGE train`: `train` is on PATH; with no channels it fails and says why.
    run = subprocess.run(
        ["docker", "run", "--rm", f"{REPOSITORY}:tabular_311", "train"], capture_output=True, text=True
    )
    assert run.returncode == 1
    assert "channel 'train' is empty or missing" in run.stderr

    # Nothing changed: no rebuild. training/ changed: only the last layer is rebuilt (pip layer from cache).
    same = build(repo, base_image)
    assert "is up to date" in same.stderr and outputs(same)["CONTENT_TAG"] == outputs(first)["CONTENT_TAG"]
    # A change never seen before (earlier runs on this machine may have built other edits already).
    program.write_text(f'"""changed {uuid.uuid4()}"""\n')
    changed = build(repo, base_image)
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert outputs(changed)["CONTENT_TAG"] != outputs(first)["CONTENT_TAG"]
    # The dependency step (uv under the lock) and the smoke test come from the layer cache.
    install_step = changed.stderr.split("INSTALLER", 1)[1].split("Step", 1)[0]
    assert "Using cache" in install_step
    smoke_step = changed.stderr.split("smoke.py &&", 1)[1].split("Step", 1)[0]
    assert "Using cache" in smoke_step
    good_id = client.images.get(f"{REPOSITORY}:tabular_311").id

    # A failing build (unresolvable requirement, or the wrong Python) leaves the last good image tagged.
    requirements = repo / "themes/tabular/docker/requirements.txt"
    requirements.write_text(requirements.read_text() + "this-package-does-not-exist-gs-ds-env==9.9.9\n")
    failed = build(repo, base_image)
    assert failed.returncode != 0
    assert client.images.get(f"{REPOSITORY}:tabular_311").id == good_id
    wrong_python = build(repo, base_image, py="3.12")
    assert wrong_python.returncode != 0
    assert "expected 3.12: pass a matching BASE_IMAGE or PY" in wrong_python.stderr + wrong_python.stdout


def test_an_image_package_list_is_made_once_per_image_id_and_a_damaged_one_is_made_again(local_deploy, tmp_path):
    """Parity's image side on a warm run: the packages of an image (named by its id, i.e. its content) are listed in
    a container once, then read back; what cannot be read is listed again."""
    from gs_ds_env.kernel import parity

    image = json.loads((local_deploy.run_dir / "run.json").read_text())["image"]["uri"]
    cache = tmp_path / "cache/images/some-id.json"
    first = parity.image_environment_once(image, cache)
    assert first.origin == "listed now" and first.packages == parity.image_environment(image).packages
    again = parity.image_environment_once(image, cache)
    assert again.origin.startswith("reused: listed at ") and again.origin.endswith(f"({cache})")
    assert (again.python, again.packages) == (first.python, first.packages)
    cache.write_text('{"python": "3.11.1"')  # cut short
    assert parity.image_environment_once(image, cache).origin == "listed now"
    assert json.loads(cache.read_text())["packages"] == first.packages
