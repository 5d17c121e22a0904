"""What a command of this project started on this machine and left behind when it was killed (kill -9, a closed
terminal, a power cut): local endpoints and batch transforms (the SDK's scratch folder under WORKING_DIR, their
containers, the docker-compose serving them), local training jobs' containers, labs and apps.

Every such command claims what it starts: an owner file in its scratch folder and labels on its containers, both
naming its process (pid and start time, so a reused pid is not mistaken for it) and this checkout. A claim whose
process is gone is a leftover: `inv doctor` reports it, `inv clean --orphans` removes it, and a "port in use" line
names it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from gs_ds_env.settings import Settings

OWNER_FILE = "owner.json"
LABEL_OWNER = "gs-ds-env.owner"  # "<pid>:<start time>"
LABEL_CHECKOUT = "gs-ds-env.checkout"  # the project folder the command ran in
LABEL_KIND = "gs-ds-env.kind"  # serve, transform, train, lab, app
SCRATCH_KINDS = ("serve", "transform", "endpoint-check")  # WORKING_DIR/<kind>-*: a local endpoint's or transform's


def owner() -> str:
    """This process, as a claim names it."""
    import psutil

    return f"{os.getpid()}:{psutil.Process().create_time():.2f}"


def alive(claim: str) -> bool:
    import psutil

    pid, _, started = claim.partition(":")
    try:
        return f"{psutil.Process(int(pid)).create_time():.2f}" == started
    except (ValueError, psutil.Error):
        return False


def labels(settings: Settings, kind: str) -> dict[str, str]:
    """The labels of a container this process starts."""
    return {LABEL_OWNER: owner(), LABEL_CHECKOUT: str(settings.repo_root.resolve()), LABEL_KIND: kind}


def claim(folder: Path, settings: Settings, kind: str, **facts) -> None:
    """Write the owner file of a scratch folder this process starts something from."""
    record = {"owner": owner(), "kind": kind, "checkout": str(settings.repo_root.resolve()), "started": time.time()}
    (folder / OWNER_FILE).write_text(json.dumps({**record, **facts}) + "\n")


@dataclass
class Leftover:
    kind: str
    what: str  # one line for doctor, clean and the port message
    folder: Path | None = None
    containers: list = field(default_factory=list)  # docker SDK Container objects
    processes: list[int] = field(default_factory=list)  # docker-compose processes still serving it
    ports: list[int] = field(default_factory=list)

    @property
    def remove_command(self) -> str:
        return "inv clean --orphans"


def _docker():
    from docker.errors import DockerException

    import docker

    try:
        client = docker.from_env()
        client.ping()
        return client
    except DockerException:
        return None


def _ports(container) -> list[int]:
    bindings = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
    return sorted({int(b["HostPort"]) for found in bindings.values() if found for b in found if b.get("HostPort")})


def _compose_processes(folder: Path) -> list[int]:
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        command = " ".join(process.info.get("cmdline") or [])
        if "compose" in command and str(folder) in command:
            found.append(process.info["pid"])
    return found


def _under(container, folder: Path) -> bool:
    from gs_ds_env.job import local_containers

    return container.labels.get(local_containers.LABEL, "").startswith((f"{folder}/", f"{folder.resolve()}/"))


def find(settings: Settings) -> list[Leftover]:
    """Every leftover of this checkout: scratch folders under WORKING_DIR and runs/, and labelled containers, whose
    owner is gone."""
    client = _docker()
    containers = client.containers.list(all=True, ignore_removed=True) if client else []
    checkout = str(settings.repo_root.resolve())
    found: list[Leftover] = []
    claimed: set[str] = set()
    folders = [p for kind in SCRATCH_KINDS for p in sorted(settings.working_dir.glob(f"{kind}-*")) if p.is_dir()]
    folders += [p for p in sorted(settings.paths.runs.glob("*/container")) if p.is_dir()]
    for folder in folders:
        try:
            record = json.loads((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            record = {}
        if record.get("owner") and alive(record["owner"]):
            continue
        if record.get("checkout", checkout) != checkout:
            continue
        mine = [c for c in containers if _under(c, folder)]
        claimed.update(c.id for c in mine)
        kind = record.get("kind") or ("train" if folder.name == "container" else folder.name.split("-")[0])
        ports = sorted({port for c in mine for port in _ports(c)})
        running = [c for c in mine if c.status == "running"]
        state = f"{len(running)} container(s) running" if running else f"{len(mine)} container(s) stopped"
        where = f" on 127.0.0.1:{', '.join(map(str, ports))}" if ports and running else ""
        found.append(
            Leftover(
                kind,
                f"a local {kind} left by a killed command ({record.get('command') or 'owner gone'}): {folder}, "
                f"{state}{where}",
                folder,
                mine,
                _compose_processes(folder),
                ports,
            )
        )
    for container in containers:
        claim_label = container.labels.get(LABEL_OWNER)
        if not claim_label or container.id in claimed or container.labels.get(LABEL_CHECKOUT) != checkout:
            continue
        if alive(claim_label):
            continue
        kind = container.labels.get(LABEL_KIND, "container")
        ports = _ports(container)
        where = f" on 127.0.0.1:{', '.join(map(str, ports))}" if ports else ""
        found.append(
            Leftover(
                kind,
                f"a {kind} container left by a killed command: {container.name} ({container.status}){where}",
                None,
                [container],
                [],
                ports,
            )  # fmt: skip
        )
    return found


def remove(leftovers: list[Leftover]) -> int:
    """Stop what serves them (docker-compose), remove their containers and scratch folders; how many were removed."""
    import psutil
    from docker.errors import APIError, NotFound

    for leftover in leftovers:
        for pid in leftover.processes:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).terminate()
        for container in leftover.containers:
            with contextlib.suppress(NotFound, APIError):
                container.remove(force=True)
        if leftover.folder is not None:
            shutil.rmtree(leftover.folder, ignore_errors=True)
    return len(leftovers)


def holding_port(settings: Settings, port: int) -> str | None:
    """What of this project holds `port` on this machine, in words (None: nothing of ours)."""
    for leftover in find(settings):
        if port in leftover.ports:
            return f"{leftover.what}: `{leftover.remove_command}` removes it"
    client = _docker()
    for container in client.containers.list(ignore_removed=True) if client else []:
        if port in _ports(container) and container.labels.get(LABEL_KIND):
            return f"the {container.labels[LABEL_KIND]} container {container.name} of a running command holds it"
    return None
