"""`inv lab`: the theme's workspace image (JupyterLab; its kernel the theme's training env, as in SageMaker Studio)
on 127.0.0.1 with a folder mounted, token protected, until Ctrl-C."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from gs_ds_env import image
from gs_ds_env.image.app import check_port, until_ctrl_c
from gs_ds_env.settings import ConfigError, Settings
from gs_ds_env.workspace import HOME

CONTAINER_PORT = 8888
STARTUP_SECONDS = 90


def _server_status(body: bytes) -> bool:
    try:
        return "started" in json.loads(body)
    except ValueError:
        return False


def run(settings: Settings, port: int, folder: Path, check_only: bool = False) -> None:
    """Build the workspace image, start JupyterLab on 127.0.0.1:<port> with `folder` mounted in the home, wait until
    it answers (its /api/status, authenticated by the token), print its URL; follow its log until Ctrl-C (or,
    `check_only`, stop it at once)."""
    import docker

    check_port(port)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder: run inv lab from the folder to work in, or pass --folder")
    built = image.build(settings, workspace=True)
    token = secrets.token_hex(24)
    mounted = f"{HOME}/{folder.resolve().name or 'work'}"
    container = docker.from_env().containers.run(
        built.uri,
        detach=True,
        remove=True,
        ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", port)},
        environment={"JUPYTER_TOKEN": token, "JUPYTER_BASE_URL": "/"},
        volumes={str(folder.resolve()): {"bind": mounted, "mode": "rw"}},
        labels={"gs-ds-env.lab": settings.theme},
    )
    base = f"http://127.0.0.1:{port}"
    banner = (
        f"lab: {base}/lab?token={token}\n  kernel {settings.kernel_name} (image {built.uri}); {folder.resolve()} is "
        f"{mounted}; on a notebook instance: <notebook URL>/proxy/{port}/lab?token={token}"
    )
    until_ctrl_c(
        container, built.uri, f"{base}/api/status?token={token}", banner, check_only, STARTUP_SECONDS, _server_status
    )
