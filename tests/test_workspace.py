"""The theme image as a workspace, for real: the workspace image runs as SageMaker Studio runs it and its kernel is the
training env; `inv lab` answers with its token on 127.0.0.1 and leaves no container; `inv devcontainer` writes a file
the Dev Containers reference CLI opens."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest
from conftest import INV, free_port, wait_for_line

import docker

pytestmark = [pytest.mark.docker, pytest.mark.slow]


# ---- the workspace image (JupyterLab, the theme's kernel; SageMaker Studio's rules) and `inv lab` -----------------
def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def wait_until_answers(url: str, container=None, seconds: float = 90) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            return get_json(url)
        except (urllib.error.URLError, OSError, ValueError):
            if container is not None:
                container.reload()
                assert container.status in ("created", "running"), container.logs().decode()[-2000:]
            time.sleep(0.5)
    raise AssertionError(f"{url} never answered")


def execute_through_server(base: str, kernel_name: str, code: str, token: str = "") -> str:
    """Start `kernel_name` through the Jupyter server's REST API and run `code` over its websocket (the kernel
    messaging protocol, as JupyterLab does): what it printed, or the error it raised."""
    import asyncio
    import http.cookiejar

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    query = f"?token={token}" if token else ""
    # Without a token (Studio's way: its proxy authenticates) the server wants its XSRF cookie echoed on a POST, as
    # the JupyterLab page does.
    cookies = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    opener.open(f"{base}/lab{query}", timeout=30).read()
    xsrf = next((cookie.value for cookie in cookies if cookie.name == "_xsrf"), "")
    cookie_header = "; ".join(f"{cookie.name}={cookie.value}" for cookie in cookies)
    request = urllib.request.Request(
        f"{base}/api/kernels{query}",
        data=json.dumps({"name": kernel_name}).encode(),
        headers={"Content-Type": "application/json", "X-XSRFToken": xsrf},
        method="POST",
    )
    with opener.open(request, timeout=30) as response:
        kernel = json.load(response)

    async def run() -> str:
        socket = await websocket_connect(
            HTTPRequest(
                f"{base.replace('http', 'ws', 1)}/api/kernels/{kernel['id']}/channels{query}",
                headers={"Cookie": cookie_header},
            )
        )
        msg_id, printed, replied, idle = uuid.uuid4().hex, [], False, False
        header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": uuid.uuid4().hex}
        await socket.write_message(
            json.dumps(
                {
                    "header": {**header, "date": "", "version": "5.3"},
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False, "store_history": False, "allow_stdin": False},
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        while not (replied and idle):
            message = json.loads(await asyncio.wait_for(socket.read_message(), 120))
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = message["msg_type"]
            if kind == "stream":
                printed.append(message["content"]["text"])
            elif kind == "error":
                printed.append(f"ERROR {message['content']['ename']}: {message['content']['evalue']}")
            replied = replied or kind == "execute_reply"
            idle = idle or (kind == "status" and message["content"]["execution_state"] == "idle")
        socket.close()
        return "".join(printed)

    return asyncio.run(run())


def test_the_workspace_image_runs_as_studio_runs_it_and_its_kernel_is_the_training_env(local_deploy):
    """The workspace variant, run the way SageMaker Studio runs a custom JupyterLab image (its default user, port 8888,
    base URL /jupyterlab/default, no token: Studio's proxy authenticates): the server offers exactly the theme's
    kernel, which starts through the server and runs the training image's env; parity with the notebook kernel."""
    project = local_deploy.project
    built = subprocess.run(
        [INV, "build", "--workspace"], cwd=project, env=local_deploy.env, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stdout + built.stderr
    image = built.stdout.split("image: ", 1)[1].split()[0]
    assert image.startswith("gs-ds-env:tabular_311-workspace-")
    client = docker.from_env()
    config = client.images.get(image).attrs["Config"]
    assert config["User"] == "1000:100" and config["WorkingDir"] == "/home/sagemaker-user"
    facts = client.containers.run(
        image, ["sh", "-c", "id -u; id -g; echo $HOME; test -e /opt/ml && echo has-opt-ml || echo no-opt-ml"],
        remove=True,
    ).decode().split()  # fmt: skip
    assert facts == ["1000", "100", "/home/sagemaker-user", "no-opt-ml"]

    container = client.containers.run(image, detach=True, ports={"8888/tcp": ("127.0.0.1", None)})
    try:
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["8888/tcp"][0]["HostPort"])
        base = f"http://127.0.0.1:{port}/jupyterlab/default"
        assert "started" in wait_until_answers(f"{base}/api/status", container)
        specs = get_json(f"{base}/api/kernelspecs")
        assert specs["default"] == "tabular_311" and set(specs["kernelspecs"]) == {"tabular_311"}
        assert specs["kernelspecs"]["tabular_311"]["spec"]["argv"][0] == "/opt/venv/bin/python"
        kernel_python = project / "themes/tabular/kernel/.venv/bin/python"
        versions = (
            "import pandas, sklearn, xgboost; print(pandas.__version__, sklearn.__version__, xgboost.__version__)"
        )
        expected = subprocess.run([str(kernel_python), "-c", versions], capture_output=True, text=True).stdout
        printed = execute_through_server(base, "tabular_311", f"import sys; print(sys.executable)\n{versions}")
        assert printed.splitlines() == ["/opt/venv/bin/python", expected.strip()], printed
    finally:
        container.remove(force=True)

    parity = subprocess.run(
        [INV, "parity", "--workspace"], cwd=project, env=local_deploy.env, capture_output=True, text=True
    )
    assert parity.returncode == 0, parity.stdout + parity.stderr
    assert re.search(
        r"and image gs-ds-env:tabular_311-workspace-\w+: \d+ shared packages, 0 differences", parity.stdout
    )


def test_inv_lab_answers_with_its_token_on_127_0_0_1_and_ctrl_c_leaves_no_container(local_deploy, tmp_path):
    project = local_deploy.project
    folder = tmp_path / "my-notebooks"
    folder.mkdir()
    (folder / "hello.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    port = free_port()
    lab = subprocess.Popen(
        [INV, "lab", "--port", str(port), "--folder", str(folder)],
        cwd=project, env=local_deploy.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        seen = wait_for_line(lab, "lab: http://127.0.0.1:", 240)
        url = next(line for line in seen.splitlines() if line.startswith("lab: ")).split()[1]
        token = url.split("token=", 1)[1]
        assert url == f"http://127.0.0.1:{port}/lab?token={token}" and len(token) >= 32
        listing = get_json(f"http://127.0.0.1:{port}/api/contents/my-notebooks?token={token}")
        assert [item["name"] for item in listing["content"]] == ["hello.ipynb"]  # the folder is mounted
        with pytest.raises(urllib.error.HTTPError) as refused:
            get_json(f"http://127.0.0.1:{port}/api/contents/my-notebooks")
        assert refused.value.code == 403  # no token, no access
        assert docker.from_env().containers.list(filters={"label": "gs-ds-env.lab=tabular"})
    finally:
        lab.send_signal(signal.SIGINT)
        lab.wait(60)
    assert lab.returncode != 0
    leftovers = docker.from_env().containers.list(all=True, filters={"label": "gs-ds-env.lab=tabular"})
    assert leftovers == [], [c.name for c in leftovers]


def test_inv_devcontainer_writes_a_file_the_dev_containers_cli_opens_in_the_workspace_image(
    local_deploy, tmp_path, devcontainer_cli
):
    """The file names the workspace image by its content tag (the image exists), and the Dev Containers reference CLI
    (what VS Code runs) brings the folder up in it: the interpreter is the training env with the kernel's versions,
    the folder is mounted, the AWS config read-only. Re-running changes nothing; a hand-edited file is kept."""
    project = local_deploy.project
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws/config").write_text("[default]\nregion = eu-west-1\n")
    folder = tmp_path / "my-analysis"
    folder.mkdir()
    (folder / "explore.py").write_text("print('mine')\n")
    env = {**local_deploy.env, "HOME": str(home)}

    def devcontainer():
        result = subprocess.run([INV, "devcontainer", "--folder", str(folder)], cwd=project, env=env, capture_output=True, text=True)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    assert "devcontainer.json written" in devcontainer()
    path = folder / ".devcontainer/tabular/devcontainer.json"
    config = json.loads(path.read_text())
    built = subprocess.run([INV, "build", "--workspace"], cwd=project, env=env, capture_output=True, text=True)
    assert config["image"] == built.stdout.split("image: ", 1)[1].split()[0]
    assert re.fullmatch(r"gs-ds-env:tabular_311-workspace-[0-9a-f]{12}", config["image"])
    docker.from_env().images.get(config["image"])  # the image it names exists
    assert config["remoteUser"] == "sagemaker-user" and config["overrideCommand"] is True
    assert config["customizations"]["vscode"]["settings"]["python.defaultInterpreterPath"] == "/opt/venv/bin/python"
    assert set(config["customizations"]["vscode"]["extensions"]) == {"ms-python.python", "ms-toolsai.jupyter"}
    assert config["mounts"] == ["source=${localEnv:HOME}/.aws,target=/home/sagemaker-user/.aws,type=bind,readonly"]

    written_at = path.stat().st_mtime_ns
    assert "up to date" in devcontainer() and path.stat().st_mtime_ns == written_at
    edited = path.read_text().replace('"overrideCommand": true', '"overrideCommand": false')
    path.write_text(edited)
    assert "kept as devcontainer.json.previous" in devcontainer()
    assert (path.parent / "devcontainer.json.previous").read_text() == edited and json.loads(path.read_text()) == config

    cli = [str(devcontainer_cli), "--workspace-folder", str(folder), "--config", str(path)]
    try:
        up = subprocess.run([cli[0], "up", *cli[1:]], env=env, capture_output=True, text=True, timeout=600)
        assert '"outcome":"success"' in up.stdout, (up.stdout + up.stderr)[-3000:]
        versions = (
            "import pandas, sklearn, xgboost; print(pandas.__version__, sklearn.__version__, xgboost.__version__)"
        )
        kernel = subprocess.run(
            [str(project / "themes/tabular/kernel/.venv/bin/python"), "-c", versions], capture_output=True, text=True
        ).stdout.strip()
        inside = subprocess.run(
            [cli[0], "exec", *cli[1:], "sh", "-c",
             f"id -u; pwd; python -c 'import sys, ipykernel; print(sys.executable)'; python -c '{versions}'; "
             "cat explore.py ~/.aws/config; touch ~/.aws/mine 2>&1 || true"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        lines = inside.stdout.strip().splitlines()
        assert lines[:5] == [
            "1000",
            "/home/sagemaker-user/my-analysis",
            "/opt/venv/bin/python",
            kernel,
            "print('mine')",
        ]
        assert lines[5:7] == ["[default]", "region = eu-west-1"] and "Read-only file system" in lines[7], lines
    finally:
        client = docker.from_env()
        for container in client.containers.list(all=True, filters={"label": f"devcontainer.local_folder={folder}"}):
            uid_layer = [tag for tag in container.image.tags if tag.startswith("vsc-")]  # the CLI's, not ours
            container.remove(force=True)
            for tag in uid_layer:
                with contextlib.suppress(docker.errors.APIError):  # still used by another folder's dev container
                    client.images.remove(tag)
