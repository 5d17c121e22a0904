"""`inv lab`: the theme's workspace image (JupyterLab; its kernel the theme's training env, as in SageMaker Studio)
on 127.0.0.1 with a folder mounted, token protected, until Ctrl-C."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from gs_ds_env import image
from gs_ds_env.image.app import check_port, until_ctrl_c
from gs_ds_env.ops import leftovers
from gs_ds_env.settings import ConfigError, Settings
from gs_ds_env.workspace import HOME

CONTAINER_PORT = 8888
STARTUP_SECONDS = 90


def _server_status(body: bytes) -> bool:
    try:
        return "started" in json.loads(body)
    except ValueError:
        return False


# Folders a lab must not mount read-write without being told twice: the whole machine, a home as a whole, the system.
SYSTEM_FOLDERS = ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/opt", "/proc", "/root", "/sbin", "/sys",
                  "/usr", "/var", "/home", "/Users", "/System", "/Library")  # fmt: skip


def refuse_broad_folder(folder: Path, force: bool) -> None:
    """The lab's container may write everywhere in the mounted folder: `/`, a home itself or a system folder is
    refused unless --force (a project folder inside the home is what a lab is for)."""
    resolved = folder.resolve()
    broad = str(resolved) in SYSTEM_FOLDERS or resolved == Path.home().resolve()
    if broad and not force:
        raise ConfigError(
            f"--folder {folder} would let the lab's container write anywhere in {resolved}: mount a project folder "
            "(e.g. --folder ~/my-analysis), or pass --force if you mean it"
        )


def run(settings: Settings, port: int, folder: Path, check_only: bool = False, force: bool = False) -> None:
    """Build the workspace image, start JupyterLab on 127.0.0.1:<port> with `folder` mounted in the home, wait until
    it answers (its /api/status, authenticated by the token), print its URL; follow its log until Ctrl-C (or,
    `check_only`, stop it at once)."""
    import docker

    check_port(port, settings)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder: run inv lab from the folder to work in, or pass --folder")
    refuse_broad_folder(folder, force)
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
        labels={"gs-ds-env.lab": settings.theme, **leftovers.labels(settings, "lab")},
    )
    base = f"http://127.0.0.1:{port}"
    banner = (
        f"lab: {base}/lab?token={token}\n  kernel {settings.kernel_name} (image {built.uri}); {folder.resolve()} is "
        f"{mounted}; on a notebook instance: <notebook URL>/proxy/{port}/lab?token={token}"
    )
    until_ctrl_c(
        container, built.uri, f"{base}/api/status?token={token}", banner, check_only, STARTUP_SECONDS, _server_status
    )
