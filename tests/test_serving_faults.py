"""The model server and the local endpoint under faults, in real containers: a handler that exits or hangs, clients
that announce a body and never send it, a model with a nested archive and a large file, a truncated archive, and
`kill -9` of `inv serve`. The server answers with its status and keeps serving; nothing is left running unseen."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import INV, free_port, post, started_server, tool_env, wait_for_line

import docker

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FAULTY_HANDLER = """
import os
import sys
import time


def model_fn(model_dir):
    return "faulty"


def predict_fn(data, model):
    value = float(data[0][0])
    if value == 3:
        os._exit(3)  # gunicorn's code for "worker failed to boot"
    if value == 4:
        sys.exit(4)  # gunicorn's code for "app failed to load"
    if value >= 100:
        time.sleep(value)  # stuck well past the timeout
    return [value]
"""

LISTING_HANDLER = """
import json
import os


def model_fn(model_dir):
    return sorted(os.path.relpath(os.path.join(folder, name), model_dir)
                  for folder, _, names in os.walk(model_dir) for name in names)


def input_fn(body, content_type):
    return None


def predict_fn(data, model):
    return model


def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def eventually(check, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"not within {seconds} s")


def answered(port: int, body: bytes):
    try:
        return post(port, body, "text/csv")
    except (urllib.error.URLError, OSError, ConnectionError):
        return None


def test_a_handler_that_exits_or_hangs_never_stops_the_server(tabular_image, tmp_path):
    (tmp_path / "model/code").mkdir(parents=True)
    (tmp_path / "model/code/inference.py").write_text(FAULTY_HANDLER)
    container, port = started_server(
        tabular_image, tmp_path / "model", SAGEMAKER_MODEL_SERVER_WORKERS="1", SAGEMAKER_MODEL_SERVER_TIMEOUT="2"
    )
    try:
        assert post(port, b"4", "text/csv") == (
            500,
            "HandlerError: the handler called sys.exit(4) while answering a request\n",
        )
        assert post(port, b"1", "text/csv") == (200, "1.0\n")
        # os._exit(3) ends the worker (its request has no answer); gunicorn replaces it instead of halting.
        answered(port, b"3")
        assert eventually(lambda: answered(port, b"2") == (200, "2.0\n"))
        container.reload()
        assert container.status == "running"
        # A prediction stuck past the timeout: 504, then the worker is replaced (the stuck call would take 600 s).
        assert post(port, b"600", "text/csv") == (
            504,
            "the prediction took longer than SAGEMAKER_MODEL_SERVER_TIMEOUT=2 s\n",
        )
        assert eventually(lambda: answered(port, b"5") == (200, "5.0\n"), 30)
        assert "a prediction ran past the timeout; replacing the worker" in container.logs().decode()
    finally:
        container.remove(force=True)


def test_bodies_that_never_arrive_time_out_and_the_connections_a_worker_holds_are_bounded(tabular_image, tmp_path):
    (tmp_path / "model/code").mkdir(parents=True)
    (tmp_path / "model/code/inference.py").write_text(FAULTY_HANDLER)
    container, port = started_server(
        tabular_image, tmp_path / "model", SAGEMAKER_MODEL_SERVER_WORKERS="1", GS_BODY_TIMEOUT_SECONDS="2",
        GS_MAX_CONNECTIONS="40",
    )  # fmt: skip
    stalled = []

    def announce_and_stall() -> socket.socket:  # 100 bytes announced, none sent
        client = socket.create_connection(("127.0.0.1", port), timeout=15)
        client.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 100\r\n\r\n"
        )
        stalled.append(client)
        return client

    def status(client: socket.socket) -> str:
        try:
            first = client.recv(64).decode(errors="replace")
        except TimeoutError:
            return "hung"
        return first.split(" ")[1] if first.startswith("HTTP/1.1 ") else first or "closed"

    try:
        # A few, within the bound: each is answered 408 once its body is late, and its connection closed.
        assert [status(client) for client in [announce_and_stall() for _ in range(10)]] == ["408"] * 10
        # A flood, past the bound: refused at once (503) or timed out (408); none is held forever.
        statuses = [status(client) for client in [announce_and_stall() for _ in range(120)]]
        assert "hung" not in statuses and set(statuses) <= {"408", "503", "closed"} and "503" in statuses, statuses
        assert post(port, b"1", "text/csv") == (200, "1.0\n")  # and it goes on serving
    finally:
        for client in stalled:
            client.close()
        container.remove(force=True)


@pytest.fixture(scope="module")
def listing_model(tmp_path_factory) -> Path:
    """A model.tar.gz holding a handler that answers with the files it finds in /opt/ml/model, an archive of its
    own (bundle.tar) and a large file (80 MB)."""
    root = tmp_path_factory.mktemp("listing-model")
    (root / "code").mkdir()
    (root / "code/inference.py").write_text(LISTING_HANDLER)
    (root / "inner.txt").write_text("inside the bundle\n")
    with tarfile.open(root / "bundle.tar", "w") as bundle:
        bundle.add(root / "inner.txt", arcname="inner.txt")
    (root / "big.bin").write_bytes(os.urandom(80 * 1024 * 1024))
    archive = root / "model.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for name in ("code", "bundle.tar", "big.bin"):
            tar.add(root / name, arcname=name)
    return archive


def serve_env(root: Path, port: int, base_image: str) -> dict:
    return tool_env(
        PY="3.11", TARGET="local", BASE_IMAGE=base_image, WORKING_DIR=str(root / "work"), SERVE_PORT=str(port)
    )


def test_the_local_endpoint_mounts_what_model_tar_gz_holds_as_it_is(
    project, tabular_image, base_image, listing_model, tmp_path
):
    """SageMaker mounts the archive's members as they are: local mode opened every nested archive (and read every
    large file to find out). A large model is unpacked with progress; a truncated one is one line."""
    port = free_port()
    env = serve_env(tmp_path, port, base_image)
    server = subprocess.Popen(
        [INV, "serve", "--model-data", str(listing_model), "--theme", "tabular"], cwd=project, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        output = wait_for_line(server, "answers on", 180)
        status, listed = post(port, b"{}", "application/json")
        assert status == 200 and json.loads(listed) == ["big.bin", "bundle.tar", "code/inference.py"], listed
        assert "unpacking" in output and " MB compressed" in output, output
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=90)
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(listing_model.read_bytes()[: 5 * 1024 * 1024])
    checked = subprocess.run(
        [INV, "serve", "--model-data", str(truncated), "--theme", "tabular", "--check"], cwd=project, env=env,
        capture_output=True, text=True,
    )  # fmt: skip
    assert checked.returncode == 1 and "Traceback" not in checked.stderr
    assert checked.stderr.strip().splitlines()[-1] == (
        f"error: cannot unpack {truncated}: it ends early (truncated: copied or downloaded only in part); serve a "
        "whole model.tar.gz"
    )


def test_an_endpoint_left_by_kill_9_is_named_reported_and_removed(
    project, tabular_image, base_image, listing_model, tmp_path
):
    port = free_port()
    env = serve_env(tmp_path, port, base_image)
    command = [INV, "serve", "--model-data", str(listing_model), "--theme", "tabular"]
    server = subprocess.Popen(
        command, cwd=project, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    wait_for_line(server, "answers on", 180)
    server.kill()  # kill -9 of inv alone: nothing of its own clean-up runs, docker-compose and the container stay
    server.communicate(timeout=30)
    checkout = {"label": f"gs-ds-env.checkout={project.resolve()}"}
    assert [c.status for c in docker.from_env().containers.list(filters=checkout)] == ["running"]
    (scratch,) = (tmp_path / "work").glob("serve-*")

    doctor = subprocess.run([INV, "doctor"], cwd=project, env=env, capture_output=True, text=True)
    (row,) = [line for line in doctor.stdout.splitlines() if "leftover serve" in line]
    assert (
        row.startswith("WARN") and str(scratch) in row and f"127.0.0.1:{port}" in row and "inv clean --orphans" in row
    )
    # inv status: the orphan in its table, with its port and the command that removes it; for cron, exit 1 once it
    # has run longer than --max-hours.
    state = subprocess.run([INV, "status", "--json", "--max-hours", "0"], cwd=project, env=env, capture_output=True,
                           text=True)  # fmt: skip
    assert state.returncode == 1 and "1 running longer than 0 h: serve " in state.stderr, state.stderr
    (item,) = json.loads(state.stdout)["items"]
    assert (item["where"], item["kind"], item["orphaned"], item["stop"]) == (
        "here",
        "serve",
        True,
        "inv clean --orphans",
    )
    assert item["state"] == f"running on 127.0.0.1:{port}"
    again = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    (line,) = again.stderr.strip().splitlines()
    assert f"port {port} is already in use on 127.0.0.1: a local serve left by a killed command" in line
    assert "`inv clean --orphans` removes it" in line

    dry = subprocess.run([INV, "clean", "--orphans", "--dry-run"], cwd=project, env=env, capture_output=True, text=True)
    assert dry.returncode == 0 and "would remove: a local serve left by a killed command" in dry.stdout
    assert docker.from_env().containers.list(filters=checkout)  # a dry run removes nothing
    cleaned = subprocess.run([INV, "clean", "--orphans"], cwd=project, env=env, capture_output=True, text=True)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert docker.from_env().containers.list(all=True, filters=checkout) == [] and not scratch.exists()
    assert eventually(lambda: answered(port, b"{}") is None, 30)  # nothing answers there any more
    after = subprocess.run([INV, "status", "--json"], cwd=project, env=env, capture_output=True, text=True)
    assert after.returncode == 0 and json.loads(after.stdout)["items"] == []
