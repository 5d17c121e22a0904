"""bin/gs-env-idle-stop.py against a real Jupyter server (jupyter_server, as notebook instances run it) with a real
kernel and a real terminal: a busy kernel is work, a terminal typed into is activity, a server it cannot read keeps
the instance up, a running container or `make` of this checkout is work; idle past the window, it signs and sends
StopNotebookInstance for the instance its metadata names (moto_server answers). The window is a parameter: no
timed assertion."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, VENV_BIN, free_port, tool_env

SCRIPT = REPO / "bin/gs-env-idle-stop.py"
TOKEN = "idle-test-token"
NOTEBOOK = "team-notebook"


def watch(jupyter, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """One run of the watcher with the system-less python it runs with on the instance (stdlib only)."""
    return subprocess.run(
        [sys.executable, "-S", "-I", str(SCRIPT), "--runtime-dir", str(jupyter.runtime), "--metadata",
         str(jupyter.metadata), "--checkout", str(jupyter.checkout), *args],
        capture_output=True, text=True, env=env or {"PATH": "/usr/bin:/bin"}, timeout=60,
    )  # fmt: skip


class Jupyter:
    def __init__(self, root: Path) -> None:
        self.runtime, self.checkout, self.metadata = (
            root / "runtime",
            root / "checkout",
            root / "resource-metadata.json",
        )
        self.checkout.mkdir()
        self.metadata.write_text(json.dumps({
            "ResourceName": NOTEBOOK, "ResourceArn": f"arn:aws:sagemaker:eu-west-1:123456789012:notebook-instance/{NOTEBOOK}",
        }))  # fmt: skip
        self.port = free_port()
        env = tool_env(JUPYTER_RUNTIME_DIR=str(self.runtime), JUPYTER_DATA_DIR=str(root / "data"),
                       JUPYTER_CONFIG_DIR=str(root / "config"), HOME=str(root))  # fmt: skip
        self.process = subprocess.Popen(
            [str(VENV_BIN / "jupyter-server"), f"--ServerApp.port={self.port}", "--ServerApp.ip=127.0.0.1",
             f"--IdentityProvider.token={TOKEN}", "--no-browser", f"--ServerApp.root_dir={root}", "--allow-root"],
            env=env, stdout=(root / "server.log").open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(self.runtime.glob("jpserver-*.json")):
            assert self.process.poll() is None, (root / "server.log").read_text()
            time.sleep(0.2)
        assert list(self.runtime.glob("jpserver-*.json")), (root / "server.log").read_text()

    def call(self, path: str, method: str = "GET", body: dict | None = None):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{path}?no_track_activity=1", method=method, data=json.dumps(body).encode() if body else None,
            headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return json.loads(text) if text else None

    def until(self, predicate, what: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        raise AssertionError(f"never {what}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def jupyter(tmp_path):
    server = Jupyter(tmp_path)
    yield server
    server.stop()


def test_a_busy_kernel_is_work_however_long_its_cell_runs(jupyter):
    from jupyter_client import BlockingKernelClient

    kernel = jupyter.call("api/kernels", "POST", {"name": "python3"})
    client = BlockingKernelClient(connection_file=str(jupyter.runtime / f"kernel-{kernel['id']}.json"))
    client.load_connection_file()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)  # a request sent before the kernel listens would be lost
        client.execute("import time; time.sleep(120)")
        jupyter.until(lambda: jupyter.call(f"api/kernels/{kernel['id']}")["execution_state"] == "busy", "busy")
        busy = watch(jupyter, "--minutes", "0", "--dry-run")
        assert busy.returncode == 0, busy.stderr
        assert f"not idle: kernel python3 ({kernel['id'][:8]}) is busy: a cell is running" in busy.stdout
        jupyter.call(f"api/kernels/{kernel['id']}/interrupt", "POST")
        jupyter.until(lambda: jupyter.call(f"api/kernels/{kernel['id']}")["execution_state"] == "idle", "idle again")
    finally:
        client.stop_channels()
    recent = watch(jupyter, "--minutes", "600", "--dry-run")
    assert "not idle long enough: last activity 0 min ago" in recent.stdout and "(kernel python3" in recent.stdout
    idle = watch(jupyter, "--minutes", "0", "--dry-run")
    assert f"would stop notebook instance {NOTEBOOK} in eu-west-1 (dry run)" in idle.stdout, idle.stdout + idle.stderr


def test_a_terminal_typed_into_is_activity(jupyter):
    import websocket

    terminal = jupyter.call("api/terminals", "POST")
    before = jupyter.call("api/terminals")[0]["last_activity"]
    time.sleep(0.01)  # a later timestamp than the terminal's creation, whatever the clock's resolution
    socket = websocket.create_connection(
        f"ws://127.0.0.1:{jupyter.port}/terminals/websocket/{terminal['name']}?token={TOKEN}", timeout=30
    )
    try:
        socket.send(json.dumps(["stdin", "echo typing\r"]))
        jupyter.until(lambda: jupyter.call("api/terminals")[0]["last_activity"] != before, "typed into")
    finally:
        socket.close()
    typed = watch(jupyter, "--minutes", "600", "--dry-run")
    assert "not idle long enough: last activity 0 min ago" in typed.stdout, typed.stdout
    assert f"(terminal {terminal['name']})" in typed.stdout


def test_a_server_it_cannot_read_keeps_the_instance_up(jupyter, tmp_path):
    (runtime,) = jupyter.runtime.glob("jpserver-*.json")
    unreadable = json.loads(runtime.read_text()) | {"url": f"http://127.0.0.1:{free_port()}/"}  # its process lives
    other = tmp_path / "other-runtime"
    other.mkdir()
    (other / runtime.name).write_text(json.dumps(unreadable))
    result = subprocess.run(
        [sys.executable, "-S", "-I", str(SCRIPT), "--runtime-dir", str(other), "--minutes", "0", "--metadata",
         str(jupyter.metadata), "--checkout", str(jupyter.checkout)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0
    assert "not idle: the Jupyter server at" in result.stdout and "cannot be read" in result.stdout
    assert "a kernel there may hold unsaved work, so the instance stays up" in result.stdout


def test_a_make_in_this_checkout_is_work(jupyter):
    (jupyter.checkout / "Makefile").write_text("wait:\n\tsleep 60\n")
    make = subprocess.Popen([shutil.which("make"), "wait"], cwd=jupyter.checkout, stdout=subprocess.DEVNULL)
    try:
        result = watch(jupyter, "--minutes", "0", "--dry-run")
        assert f"not idle: a command of this project is running: pid {make.pid}: " in result.stdout, result.stdout
    finally:
        make.kill()
        make.wait()


@pytest.mark.docker
def test_a_running_container_of_this_checkout_is_work(jupyter, base_image):
    name = f"idle-test-{jupyter.port}"
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "--label", f"gs-ds-env.checkout={jupyter.checkout}",
         "--label", "gs-ds-env.kind=serve", base_image, "sleep", "120"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        result = watch(jupyter, "--minutes", "0", "--dry-run", env={"PATH": "/usr/bin:/bin:/usr/local/bin"})
        assert f"not idle: this project's container(s) running: {name} (serve)" in result.stdout, result.stdout
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_idle_past_the_window_it_stops_its_own_notebook_instance(jupyter, moto):
    sagemaker = moto.client("sagemaker", "eu-west-1")
    sagemaker.create_notebook_instance(
        NotebookInstanceName=NOTEBOOK, InstanceType="ml.t3.medium", RoleArn="arn:aws:iam::123456789012:role/notebook"
    )
    moto.reset_recording()
    env = {"PATH": "/usr/bin:/bin", **moto.env()}
    stopped = watch(jupyter, "--minutes", "0", env=env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert f"stopping notebook instance {NOTEBOOK} in eu-west-1" in stopped.stdout
    (call,) = [c for c in moto.calls() if c.operation == "SageMaker.StopNotebookInstance"]
    assert call.body == {"NotebookInstanceName": NOTEBOOK}
    status = sagemaker.describe_notebook_instance(NotebookInstanceName=NOTEBOOK)["NotebookInstanceStatus"]
    assert status in ("Stopping", "Stopped")
    unset = watch(jupyter, env=env)
    assert unset.returncode == 2 and "IDLE_STOP_MINUTES is not set" in unset.stdout
