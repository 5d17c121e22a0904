"""A local endpoint: the theme image's `serve` through the SDK's local mode (Model.deploy(instance_type="local"),
the same docker compose round trip as a local training job), the model prepared and checked before it starts
(prepare.py), published on 127.0.0.1, stopped with Ctrl-C (or SIGTERM/SIGHUP) with nothing left running. A command
killed before it could stop it leaves a claim (ops/leftovers.py) that `inv clean --orphans` removes."""

from __future__ import annotations

import contextlib
import shutil
import socket
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
from gs_ds_env.job.report import invoked_command
from gs_ds_env.ops import leftovers
from gs_ds_env.sdk import LOCAL_ROLE, sagemaker
from gs_ds_env.serve import ServeError, local_mode, prepare, report
from gs_ds_env.serve.model_source import ModelSource
from gs_ds_env.settings import ConfigError, Settings

# Local mode never passes a role to Docker; the SDK's Model only wants an ARN-shaped string.
HEALTH_INTERVAL_SECONDS = 2


def plan(settings: Settings, source: ModelSource, port: int, host: str = "127.0.0.1") -> list[str]:
    image_note = (
        f"the image it trained in ({source.image_candidates(settings)[0]}) if still here, else the theme's image built now"
        if source.run
        else f"the {source.theme} image (Python {source.py}), built if needed"
    )
    code = source.code.origin + " when it defines a handler (model_fn, ...)" if source.code else "none given"
    return [
        f"serve {source.label}: {source.archive}",
        f"  image: {image_note}",
        f"  handler: the model's own code/ if it has one, else {code}; else the framework defaults "
        "(a model file they load); never another program's handler",
        "  check: `serve --check` in the image loads the model (one line and nothing started if it cannot)",
        f"  endpoint: SageMaker local mode (docker compose) on http://{host}:{port}/invocations until Ctrl-C",
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


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pick_port(settings: Settings, port: int, fallback: bool) -> int:
    """`port` when it is free; else, `fallback` (a local endpoint started from code, e.g. the notebook's), a free
    one, said; else the port's one line (naming what of this project holds it)."""
    try:
        ensure_free(port, settings)
        return port
    except ConfigError:
        if not fallback:
            raise
    chosen = free_port()
    print(f"note: port {port} is in use; the local endpoint takes port {chosen} instead", flush=True)
    return chosen


@dataclass(frozen=True)
class RunningEndpoint:
    name: str
    url: str
    image: str
    ready_seconds: float
    model: prepare.PreparedModel


@contextlib.contextmanager
def running(
    settings: Settings, source: ModelSource, port: int | None = None, host: str = "127.0.0.1", fallback: bool = True
):
    """A local endpoint for the model while inside (a notebook's `with`); stopped and removed on the way out,
    whatever happens (Ctrl-C, SIGTERM, an error). `port` (default SERVE_PORT) in use: another is taken when
    `fallback` (the endpoint's url says which), else the one line says what holds it."""
    port = pick_port(settings, settings.serve_port if port is None else port, fallback)
    image_ref = serving_image(settings, source)
    settings.working_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="serve-", dir=settings.working_dir))
    name = source.resource_name(settings, "local")
    leftovers.claim(scratch, settings, "serve", port=port, endpoint=name, command=invoked_command())
    session = None
    try:
        with interruptible():
            model = prepare.prepare(settings, source, image_ref, scratch)
            sagemaker()
            from sagemaker.model import Model

            (scratch / "containers").mkdir()
            session = local_session(settings, scratch / "containers", kind="serve")
            session.config = {"local": {**session.config["local"], "serving_port": port}}
            started = time.monotonic()
            with local_mode.as_sagemaker(model.folder, bind=host) as wait_seconds:
                try:
                    Model(
                        image_uri=image_ref, model_data=f"file://{model.folder}", role=LOCAL_ROLE, sagemaker_session=session,
                        name=name, env=model.environment or None,
                    ).deploy(initial_instance_count=1, instance_type="local", endpoint_name=name, wait=False)  # fmt: skip
                except RuntimeError as error:
                    if "didn't launch" not in str(error):
                        raise
                # wait=False: local mode's CreateEndpoint already returns once /ping answers; the SDK's wait would
                # only sleep its 30 s poll before asking. The status is checked here instead.
                status = session.sagemaker_client.describe_endpoint(EndpointName=name)["EndpointStatus"]
            if status != "InService":
                raise ServeError(
                    f"endpoint {name}: its container did not answer /ping within {wait_seconds} s ({status}): the "
                    "model failed to start or takes longer to load (see the container's output above)"
                )
            url_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            yield RunningEndpoint(name, f"http://{url_host}:{port}", image_ref, time.monotonic() - started, model)
    finally:
        if session is not None:
            with local_mode.as_sagemaker(None):
                _stop(session, name, scratch)
        else:
            local_containers.remove(scratch / "containers")
            shutil.rmtree(scratch, ignore_errors=True)


def serve(
    settings: Settings, source: ModelSource, port: int, check_only: bool = False, host: str = "127.0.0.1"
) -> Path | None:
    """Start the endpoint and keep it until Ctrl-C (`check_only`: stop once it answered and the report is
    written). Returns the served-model page."""
    with running(settings, source, port, host=host, fallback=False) as endpoint:
        page = report.write_local(settings, source, endpoint) if source.run else None
        print(
            f"endpoint {endpoint.name} answers on {endpoint.url}/invocations (ready in {endpoint.ready_seconds:.1f} s; "
            f"handler: {endpoint.model.handler})",
            flush=True,
        )
        if page:
            print(f"served-model page: {page}", flush=True)
        print(f"predict: inv predict --input FILE.csv|.json|.jsonl|.npy [--port {port}]; Ctrl-C stops it", flush=True)
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
    client = session.sagemaker_client
    from gs_ds_env.job.local_job import stop_compose_children

    for call, key in ((client.delete_endpoint, "EndpointName"), (client.delete_endpoint_config, "EndpointConfigName"), (client.delete_model, "ModelName")):  # fmt: skip
        with contextlib.suppress(Exception):  # not created (a failed start): nothing to delete
            call(**{key: name})
    stop_compose_children()  # a compose still starting the container would create it after the removal below
    local_containers.remove(scratch / "containers")
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"stopped: endpoint {name} and its container removed", flush=True)
