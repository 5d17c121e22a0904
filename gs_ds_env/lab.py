"""`inv lab`: the theme's workspace image (JupyterLab; its kernel the theme's training env, as in SageMaker Studio)
on 127.0.0.1 with a folder mounted, token protected, until Ctrl-C."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from . import image
from .app import answers, ensure_free
from .settings import ConfigError, Settings

CONTAINER_PORT = 8888
HOME = "/home/sagemaker-user"  # Studio's user home (uid 1000, gid 100), where the folder is mounted
STARTUP_SECONDS = 90


class LabError(RuntimeError):
    """The workspace container did not come up; the message says what it printed."""


def _server_status(body: bytes) -> bool:
    try:
        return "started" in json.loads(body)
    except ValueError:
        return False


def run(settings: Settings, port: int, folder: Path, check_only: bool = False) -> str:
    """Build the workspace image, start JupyterLab on 127.0.0.1:<port> with `folder` mounted in the home, wait until
    it answers, print its URL; follow its log until Ctrl-C (or, `check_only`, stop it at once). Returns the URL."""
    import docker

    if not 1024 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a usable port: choose 1024-65535")
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder: run inv lab from the folder to work in, or pass --folder")
    ensure_free(port)
    built = image.build(settings, workspace=True)
    token = secrets.token_hex(24)
    container = docker.from_env().containers.run(
        built.uri,
        detach=True,
        remove=True,
        ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", port)},
        environment={"JUPYTER_TOKEN": token, "JUPYTER_BASE_URL": "/"},
        volumes={str(folder.resolve()): {"bind": f"{HOME}/{folder.resolve().name or 'work'}", "mode": "rw"}},
        labels={"gs-ds-env.lab": settings.theme},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # The server's /api/status answers with its JSON once it serves (authenticated by the token).
        if not answers(f"{base}/api/status?token={token}", time.monotonic() + STARTUP_SECONDS, _server_status):
            last = container.logs(tail=5).decode(errors="replace").strip().replace("\n", " | ")
            raise LabError(f"{built.uri} did not answer {base}/api/status within {STARTUP_SECONDS} s: {last}")
        url = f"{base}/lab?token={token}"
        print(
            f"lab: {url}\n  kernel {settings.kernel_name} (image {built.uri}); {folder.resolve()} is "
            f"{HOME}/{folder.resolve().name}; on a notebook instance: <notebook URL>/proxy/{port}/lab?token={token}",
            flush=True,
        )
        if check_only:
            return url
        print("Ctrl-C stops it (the container is removed)", flush=True)
        for chunk in container.logs(stream=True, follow=True):
            print(chunk.decode(errors="replace"), end="", flush=True)
        return url
    finally:
        container.stop(timeout=10)
