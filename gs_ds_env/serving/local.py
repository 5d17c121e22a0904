"""A local endpoint: the theme image's `serve` through the SDK's local mode (Model.deploy(instance_type="local"),
the same docker compose round trip as a local training job), checked before and after it starts, stopped with
Ctrl-C (or SIGTERM/SIGHUP) with nothing left running."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gs_ds_env import image
from gs_ds_env.image.app import ensure_free
from gs_ds_env.interrupts import interruptible
from gs_ds_env.job import local_containers
from gs_ds_env.job.local_job import local_session
from gs_ds_env.sdk import sagemaker
from gs_ds_env.serving import ServeError, model_source, report
from gs_ds_env.serving.model_source import ModelSource
from gs_ds_env.settings import Settings

# Local mode never passes a role to Docker; the SDK's Model only wants an ARN-shaped string.
LOCAL_ROLE = "arn:aws:iam::000000000000:role/gs-ds-env-local"
HEALTH_INTERVAL_SECONDS = 2


def plan(settings: Settings, source: ModelSource, port: int) -> list[str]:
    image_note = (
        f"the image it trained in ({source.image_candidates(settings)[0]}) if still here, else the theme's image built now"
        if source.run
        else f"the {source.theme} image (Python {source.py}), built if needed"
    )
    return [
        f"serve {source.label}: {source.archive}",
        f"  image: {image_note}",
        "  check: `serve --check` in the image loads the model (one line and nothing started if it cannot)",
        f"  endpoint: SageMaker local mode (docker compose) on http://127.0.0.1:{port}/invocations until Ctrl-C",
        "  then: the endpoint, its container and the unpacked model are removed",
    ]


def serving_image(settings: Settings, source: ModelSource) -> str:
    from docker.errors import ImageNotFound

    import docker

    client = docker.from_env()
    for name in source.image_candidates(settings):
        try:
            client.images.get(name)
            return name
        except ImageNotFound:
            continue
    built = image.build(settings.replace(theme=source.theme, py=source.py))
    if source.run:
        print(
            f"note: the image run {source.run.job_name} trained in ({source.run.image.get('uri')}) is no longer here: "
            f"serving with {built.uri}, built now from the current lock",
            flush=True,
        )
    return built.uri


def check_model(image_ref: str, model_dir: Path) -> str:
    """`serve --check` in the image: the model and its handler load, or one line says why."""
    result = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{model_dir}:/opt/ml/model:ro", image_ref, "serve", "--check"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()] or ["no output"]
        reason = next((line for line in reversed(lines) if line.startswith("serve:")), lines[-1])
        raise ServeError(f"the model does not load in {image_ref}: {reason.removeprefix('serve: ')}")
    return result.stdout.strip()


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass(frozen=True)
class RunningEndpoint:
    name: str
    url: str
    image: str
    ready_seconds: float


@contextlib.contextmanager
def running(settings: Settings, source: ModelSource, port: int):
    """A local endpoint for the model while inside (a notebook's `with`); stopped and removed on the way out,
    whatever happens (Ctrl-C, SIGTERM, an error)."""
    ensure_free(port)
    image_ref = serving_image(settings, source)
    settings.working_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="serve-", dir=settings.working_dir))
    name = source.resource_name(settings, "local")
    session = None
    try:
        with interruptible():
            model_dir = model_source.extract(source, settings, scratch / "model")
            print(check_model(image_ref, model_dir), flush=True)
            sagemaker()
            from sagemaker.model import Model

            (scratch / "containers").mkdir()
            session = local_session(settings, scratch / "containers")
            session.config = {"local": {**session.config["local"], "serving_port": port}}
            started = time.monotonic()
            Model(
                image_uri=image_ref, model_data=f"file://{model_dir}", role=LOCAL_ROLE, sagemaker_session=session,
                name=name,
            ).deploy(initial_instance_count=1, instance_type="local", endpoint_name=name, wait=False)  # fmt: skip
            # wait=False: local mode's CreateEndpoint already returns once /ping answers; the SDK's wait would
            # only sleep its 30 s poll before asking. The status is checked here instead.
            status = session.sagemaker_client.describe_endpoint(EndpointName=name)["EndpointStatus"]
            if status != "InService":
                raise ServeError(f"endpoint {name} is {status}, not InService (see the container's output above)")
            yield RunningEndpoint(name, f"http://127.0.0.1:{port}", image_ref, time.monotonic() - started)
    finally:
        _stop(session, name, scratch)


def serve(settings: Settings, source: ModelSource, port: int, check_only: bool = False) -> Path | None:
    """Start the endpoint and keep it until Ctrl-C (`check_only`: stop once it answered and the report is
    written). Returns the served-model page when the model came from a run."""
    with running(settings, source, port) as endpoint:
        page = None
        if source.run:
            page = report.write_local(
                settings, source, endpoint.image, endpoint.name, endpoint.url, endpoint.ready_seconds
            )
        print(
            f"endpoint {endpoint.name} answers on {endpoint.url}/invocations (ready in {endpoint.ready_seconds:.1f} s)",
            flush=True,
        )
        if page:
            print(f"served-model page: {page}", flush=True)
        print(f"predict: inv predict --input FILE.csv|.json|.jsonl [--port {port}]; Ctrl-C stops it", flush=True)
        if check_only:
            return page
        with interruptible():
            failures = 0
            while failures < 3:
                time.sleep(HEALTH_INTERVAL_SECONDS)
                failures = 0 if _answers(port) else failures + 1
        raise ServeError(
            f"endpoint {endpoint.name} stopped answering {endpoint.url}/ping (see the container's output above)"
        )


def _stop(session, name: str, scratch: Path) -> None:
    """Delete the local endpoint (the SDK stops its compose process), then make sure no container is left."""
    if session is not None:
        client = session.sagemaker_client
        for call, key in ((client.delete_endpoint, "EndpointName"), (client.delete_endpoint_config, "EndpointConfigName"), (client.delete_model, "ModelName")):  # fmt: skip
            with contextlib.suppress(Exception):  # not created (a failed start): nothing to delete
                call(**{key: name})
    local_containers.remove(scratch / "containers")
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"stopped: endpoint {name} and its container removed", flush=True)
