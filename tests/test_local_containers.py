"""Local mode's containers are found by docker compose's label, running or exited, and only those under the
folder asked about: the cleanup that training jobs, local endpoints and batch transforms share."""

from __future__ import annotations

import contextlib

import pytest
from docker.errors import NotFound

import docker
from gs_ds_env.job import local_containers

pytestmark = pytest.mark.docker


def test_remove_takes_every_container_under_its_folder_and_nothing_else(tmp_path, base_image):
    client = docker.from_env()
    mine, other = tmp_path / "containers", tmp_path / "containers-of-another-run"

    def started(folder, **options):
        labels = {local_containers.LABEL: str(folder / "abc123")} if folder else {}
        return client.containers.run(base_image, ["sleep", "300"], detach=True, labels=labels, **options)

    running, exited = started(mine), started(mine)
    exited.stop(timeout=0)
    neighbour, unlabelled = started(other), started(None)
    try:
        local_containers.stop(mine, timeout=1)
        running.reload()
        assert running.status == "exited"
        assert neighbour.reload() is None and neighbour.status == "running"
        local_containers.remove(mine)
        for gone in (running, exited):
            try:
                client.containers.get(gone.id)
                raise AssertionError(f"{gone.name} under {mine} was left behind")
            except NotFound:
                pass
        assert {client.containers.get(c.id).status for c in (neighbour, unlabelled)} == {"running"}
    finally:
        for container in (running, exited, neighbour, unlabelled):
            with contextlib.suppress(NotFound):
                container.remove(force=True)
