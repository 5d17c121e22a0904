"""`inv app`: an app theme's image (theme.env KIND=app, e.g. streamlit) serving its app.py, checked over HTTP."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from gs_ds_env import image
from gs_ds_env.errors import GsError
from gs_ds_env.settings import ConfigError, Settings

CONTAINER_PORT = 8501
HEALTH_PATH = "/_stcore/health"  # Streamlit's own health endpoint
STARTUP_SECONDS = 60


class AppError(GsError):
    """The app container did not come up; the message says what it printed."""


def answers(url: str, deadline: float, good=lambda body: body.strip() == b"ok") -> bool:
    """Poll `url` until it answers 200 with a body `good` accepts (Streamlit's health: "ok"), or the deadline."""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200 and good(response.read()):
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def ensure_free(port: int, settings: Settings | None = None) -> None:
    """Before any build: the port must be free on 127.0.0.1 (else Docker fails late with an API traceback). When
    something of this project holds it (an endpoint a killed `inv serve` left), the line names it."""
    import socket

    with socket.socket() as probe:
        # As a server binds: a connection of an earlier run lingering in TIME_WAIT does not make the port busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            return
        except OSError:
            pass
    holder = None
    if settings is not None:
        from gs_ds_env.ops import leftovers

        holder = leftovers.holding_port(settings, port)
    raise ConfigError(
        f"port {port} is already in use on 127.0.0.1"
        + (f": {holder}" if holder else ": stop what listens there")
        + " — or choose another --port"
    )


def run(settings: Settings, port: int, check_only: bool) -> None:
    """Build the theme's image, serve its app on 127.0.0.1:<port> and wait for the health endpoint; with
    `check_only` stop it once healthy, else follow its log until Ctrl-C."""
    import docker

    if settings.theme_files.toolkit_requirements is not None:
        raise ConfigError(
            f"theme {settings.theme!r} is not an app theme (theme.env KIND=app): run its code with "
            f"`inv train --theme {settings.theme} --entry-point FILE`"
        )
    check_port(port, settings)
    built = image.build(settings)
    from gs_ds_env.ops import leftovers

    container = docker.from_env().containers.run(
        built.uri, ["app"], detach=True, remove=True, ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", port)},
        labels=leftovers.labels(settings, "app"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    banner = f"app: {url}/ ({HEALTH_PATH} answers ok; on a notebook instance: <notebook URL>/proxy/{port}/)"
    until_ctrl_c(container, built.uri, url + HEALTH_PATH, banner, check_only, STARTUP_SECONDS)


def check_port(port: int, settings: Settings | None = None) -> None:
    """A port a container may publish on 127.0.0.1: in range and free, checked before any build."""
    if not 1024 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a usable port: choose 1024-65535")
    ensure_free(port, settings)


def until_ctrl_c(
    container, uri: str, probe: str, banner: str, check_only: bool, startup_seconds: float, good=None
) -> None:
    """A started container (run with remove=True): wait until `probe` answers (`good` judges the body), print
    `banner`; with `check_only` stop it at once, else follow its log until Ctrl-C. It is stopped (so removed)
    whatever happens."""
    try:
        if not answers(probe, time.monotonic() + startup_seconds, *([good] if good else [])):
            last = container.logs(tail=5).decode(errors="replace").strip().replace("\n", " | ")
            raise AppError(f"{uri} did not answer {probe.split('?')[0]} within {startup_seconds} s: {last}")
        print(banner, flush=True)
        if check_only:
            return
        print("Ctrl-C stops it (the container is removed)", flush=True)
        for chunk in container.logs(stream=True, follow=True):
            print(chunk.decode(errors="replace"), end="", flush=True)
    finally:
        container.stop(timeout=10)
