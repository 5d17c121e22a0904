"""The containers SageMaker local mode starts through docker compose, for a training job, a local endpoint or a
batch transform: found by compose's own label, running or exited. The SDK writes each compose file into a folder
under the container root it is given and deletes it when done, and it stops serving containers without removing
them, so the label (not the compose file) is what still names them afterwards."""

from __future__ import annotations

import contextlib
from pathlib import Path

LABEL = "com.docker.compose.project.working_dir"


def _each(root: Path, verb: str, action) -> int:
    """`action(container)` for every container started under `root`, running or exited (how many); one warning
    line if Docker does not answer."""
    from docker.errors import DockerException, NotFound

    import docker

    try:
        client = docker.from_env()
        prefixes = (f"{root}/", f"{root.resolve()}/")
        # ignore_removed: another process's local-mode containers carry the label too, and one removed between the
        # listing and its inspection must not stop this clean-up (docker-py raises NotFound for it otherwise).
        listed = client.containers.list(all=True, filters={"label": LABEL}, ignore_removed=True)
        found = [c for c in listed if c.labels.get(LABEL, "").startswith(prefixes)]
        for container in found:
            with contextlib.suppress(NotFound):
                action(container)
        return len(found)
    except DockerException as error:
        print(f"warning: could not {verb} the containers started under {root}: {error}", flush=True)
        return 0


def stop(root: Path, timeout: int) -> None:
    """Stop (SIGTERM, then SIGKILL after `timeout` s) every container started under `root`; they stay for their logs."""
    _each(root, "stop", lambda container: container.stop(timeout=timeout))


def remove(root: Path) -> int:
    """Remove every container started under `root`, running (after Ctrl-C) or exited: none is left behind."""
    return _each(root, "remove", lambda container: container.remove(force=True))
