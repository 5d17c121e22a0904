"""The theme image built by the build script with real Docker: the SageMaker container contract, layer caching (a
training/ change rebuilds one layer), a failed build keeps the last good image, and its package list is made once per
image id."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import copy_repo, post, run_image, started_server, tool_env

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


# Both probes run in the image's interpreter (python -S: no site-packages of its own) on the site-packages named by
# their argument: the image's, or the kernel's mounted read-only (same lock, nothing left out). Same Python, same
# system libraries: what differs is only what the image left out.
SITE = """
import sys
from pathlib import Path
site = Path(sys.argv[1])
sys.path.insert(0, str(site))
"""

# Imports every compiled extension module of a site-packages (by its file name) in one process and prints what each
# gave; os._exit because some libraries' destructors call Python after it has finalized.
IMPORT_EVERY_EXTENSION = (
    SITE
    + """
import importlib, json, os
results = {}
for path in sorted(site.rglob("*.so")):
    parts = path.relative_to(site).with_suffix("").parts
    if ".libs" in parts[0] or "." not in parts[-1]:
        continue  # a vendored library, not a module
    name = ".".join((*parts[:-1], parts[-1].split(".")[0]))
    try:
        importlib.import_module(name)
        results[name] = "ok"
    except BaseException as error:
        results[name] = f"{type(error).__name__}: {error}"
print(json.dumps(results))
sys.stdout.flush()
os._exit(0)
"""
)

# What the slimmed venv must still do: botocore's gzipped data (endpoints, paginators, waiters, boto3's resources),
# and the identical libraries of numpy and scipy as one file.
SLIM_PROBE = (
    SITE
    + """
import json, os, boto3
s3 = boto3.client("s3", region_name="eu-west-1")
gfortran = sorted(site.glob("*.libs/libgfortran-040039e1*"))
print(json.dumps({
    "services": len(boto3.Session().get_available_services()),
    "resources": sorted(boto3.Session().get_available_resources()),
    "endpoint": s3.meta.endpoint_url,
    "paginator": type(s3.get_paginator("list_objects_v2")).__name__,
    "waiter": s3.get_waiter("bucket_exists").name,
    "bucket": type(boto3.resource("s3", region_name="eu-west-1").Bucket("b")).__name__,
    "gfortran_inodes": len({os.stat(p).st_ino for p in gfortran}), "gfortran_copies": len(gfortran),
    "tests": [str(p.relative_to(site)) for p in site.rglob("tests") if p.is_dir()][:3],
    "stubs": len(list(site.rglob("*.pyi"))),
}))
"""
)


def _in_image(image: str, program: str, kernel_site: Path | None = None) -> dict:
    mount = ["-v", f"{kernel_site}:/kernel-site:ro"] if kernel_site else []
    site = "/kernel-site" if kernel_site else "/opt/venv/lib/python3.11/site-packages"
    run = subprocess.run(
        ["docker", "run", "--rm", *mount, image, "python", "-S", "-c", program, site], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def test_the_slim_image_imports_every_extension_module_the_kernel_imports(local_deploy):
    """The image leaves out what no import reaches (docker/slim-venv.py: test suites, headers, symbol tables,
    duplicate libraries) and keeps the kernel's lock: every compiled module the kernel (same lock, nothing left out)
    can import, the image imports too, except the test-only ones it left out on purpose; botocore reads its data."""
    image = json.loads((local_deploy.run_dir / "run.json").read_text())["image"]["uri"]
    kernel_site = local_deploy.project / "themes/tabular/kernel/.venv/lib/python3.11/site-packages"
    in_image = _in_image(image, IMPORT_EVERY_EXTENSION)
    in_kernel = _in_image(image, IMPORT_EVERY_EXTENSION, kernel_site)
    image_packages = {name.split(".")[0] for name in in_image}
    kernel_ok = {name for name, result in in_kernel.items() if result == "ok" and name.split(".")[0] in image_packages}
    image_ok = {name for name, result in in_image.items() if result == "ok"}
    assert len(image_ok) > 200 and {"numpy._core._multiarray_umath", "sklearn._loss._loss", "uvloop.loop"} <= image_ok
    lost = kernel_ok - image_ok
    left_out_on_purpose = {
        name for name in lost if name.rsplit(".", 1)[-1].endswith("_tests") or "._test_" in name or name.endswith("._simd")
    }  # fmt: skip
    assert lost == left_out_on_purpose, {name: in_image.get(name, "absent") for name in lost - left_out_on_purpose}

    probe = _in_image(image, SLIM_PROBE)
    kernel_probe = _in_image(image, SLIM_PROBE, kernel_site)
    for same in ("services", "resources", "endpoint", "paginator", "waiter", "bucket"):
        assert probe[same] == kernel_probe[same], same
    assert probe["services"] > 300 and probe["waiter"] == "BucketExists"
    assert (probe["gfortran_copies"], probe["gfortran_inodes"]) == (2, 1)
    assert kernel_probe["gfortran_inodes"] == 2 and kernel_probe["tests"] and kernel_probe["stubs"]
    assert not probe["tests"] and not probe["stubs"]


# Each module a Python process in the container had to compile (no valid .pyc), one path a line: with
# PYTHONDONTWRITEBYTECODE every container start would compile it again.
RECORD_COMPILES = """
import importlib._bootstrap_external as bootstrap
_to_code = bootstrap.SourceLoader.source_to_code
def _recording(self, data, path, *args, **kwargs):
    with open("/record/compiled.txt", "a") as compiled:
        compiled.write(path + "\\n")
    return _to_code(self, data, path, *args, **kwargs)
bootstrap.SourceLoader.source_to_code = _recording
with open("/record/processes.txt", "a") as processes:
    import sys
    processes.write(" ".join(sys.argv[:1]) + "\\n")
"""


def test_what_train_and_serve_import_is_compiled_in_the_image_not_at_each_start(local_deploy, tmp_path):
    """A real `train` on the Titanic channels and a real `serve` answering /ping and a prediction, each process
    recording what it had to compile (a sitecustomize on PYTHONPATH): the training toolkit, the training program
    and the serving stack come compiled (before: ~400 modules at every start, ~0.06 s of serving's cold start)."""
    record = json.loads((local_deploy.run_dir / "run.json").read_text())
    recorded = tmp_path / "record"
    recorded.mkdir()
    (recorded / "sitecustomize.py").write_text(RECORD_COMPILES)
    (recorded / "compiled.txt").write_text("")
    channels = [
        arg
        for channel, folder in record["channels"].items()
        for arg in ("-v", f"{folder.removeprefix('file://')}:/opt/ml/input/data/{channel}:ro")
    ]
    recording = ["-v", f"{recorded}:/record", "-e", "PYTHONPATH=/record"]
    (recorded / "probe.py").write_text("PROBE = 1\n")
    probed = subprocess.run(
        ["docker", "run", "--rm", *recording, record["image"]["uri"], "python", "-c", "import probe"]
    )
    assert probed.returncode == 0 and (recorded / "compiled.txt").read_text() == "/record/probe.py\n"  # it records
    (recorded / "compiled.txt").write_text("")
    model = tmp_path / "model"
    trained = subprocess.run(
        ["docker", "run", "--rm", *recording, *channels,
         "-v", f"{model}:/opt/ml/model", record["image"]["uri"], "train"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-3000:]
    assert "validation:auc=" in trained.stdout + trained.stderr
    compiled_by_train = (recorded / "compiled.txt").read_text().splitlines()
    validation = Path(record["channels"]["validation"].removeprefix("file://")) / "validation.csv"
    # `serve` until /ping answers and rows are predicted, then stopped as SageMaker stops it (SIGTERM).
    container, port = started_server(
        record["image"]["uri"], model, mounts={str(recorded): "/record"}, PYTHONPATH="/record"
    )
    try:
        status, body = post(port, "\n".join(validation.read_text().splitlines()[:3]).encode(), "text/csv")
        assert status == 200, body
        container.stop(timeout=10)
    finally:
        container.remove(force=True)
    compiled_by_serve = (recorded / "compiled.txt").read_text().splitlines()[len(compiled_by_train) :]
    assert (compiled_by_train, compiled_by_serve) == ([], [])
    processes = (recorded / "processes.txt").read_text()
    assert "/opt/program/train" in processes and "/opt/program/serve" in processes  # gunicorn runs in serve's
