"""The SDK's local mode, serving as SageMaker serves, for as long as a local endpoint or transform runs. Three of its
ways differ from SageMaker's, and are changed here (the SDK offers no option for them):

- it walks every file of a model folder with `tarfile.is_tarfile` and unpacks each archive it finds, so a
  `bundle.tar` inside the model is opened (SageMaker mounts what model.tar.gz held, as it is) and a large model file
  stalls the start for minutes: the folder, unpacked here as SageMaker unpacks it, is mounted as it is;
- it publishes the endpoint's port on every interface (anyone on the network could call it): here on 127.0.0.1,
  or the address the user asks for;
- it waits 120 s for /ping whatever the model's size: here that plus a minute per GB of model;
and its compose thread, stopped by Ctrl-C or by the endpoint's deletion, would print a traceback: it is quiet.

The containers carry this project's labels (the SDK's own `local.container_config`), so one left running by a
killed command is found by `inv doctor` and removed by `inv clean --orphans`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from gs_ds_env.sdk import sagemaker

BASE_WAIT_SECONDS = 120
WAIT_SECONDS_PER_GB = 60


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


@contextlib.contextmanager
def as_sagemaker(model_dir: Path | None, bind: str = "127.0.0.1"):
    sagemaker()
    from sagemaker.local import entities
    from sagemaker.local import image as local_image

    container = local_image._SageMakerContainer
    original_volumes, original_host = container._prepare_serving_volumes, container._create_docker_host
    original_wait, original_hook = entities.HEALTH_CHECK_TIMEOUT_LIMIT, threading.excepthook
    exact = str(model_dir.resolve()) if model_dir else None

    def serving_volumes(self, model_location):
        location = str(model_location).removeprefix("file://")
        if exact and os.path.realpath(location) == exact:
            os.makedirs(os.path.join(self.container_root, self.hosts[0]), exist_ok=True)
            return [local_image._Volume(exact, "/opt/ml/model")]
        return original_volumes(self, model_location)

    def docker_host(self, *args, **kwargs):
        host = original_host(self, *args, **kwargs)
        if host.get("ports"):
            host["ports"] = [f"{bind}:{port}" if str(port).count(":") == 1 else port for port in host["ports"]]
        return host

    def quiet_compose_thread(hook_args) -> None:
        if isinstance(hook_args.thread, local_image._HostingContainer):
            return  # docker-compose ended because the endpoint was stopped; its own output said the rest
        original_hook(hook_args)

    container._prepare_serving_volumes, container._create_docker_host = serving_volumes, docker_host
    entities.HEALTH_CHECK_TIMEOUT_LIMIT = BASE_WAIT_SECONDS + (
        int(WAIT_SECONDS_PER_GB * _size(model_dir) / 1e9) if model_dir else 0
    )
    threading.excepthook = quiet_compose_thread
    try:
        yield entities.HEALTH_CHECK_TIMEOUT_LIMIT
    finally:
        container._prepare_serving_volumes, container._create_docker_host = original_volumes, original_host
        entities.HEALTH_CHECK_TIMEOUT_LIMIT = original_wait
        threading.excepthook = original_hook
