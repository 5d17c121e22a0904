"""Real servers for the AWS path: moto_server (AWS APIs over HTTP, every request recorded) and a docker-registry."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from conftest import VENV_BIN


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, what: str, process: subprocess.Popen, log: Path) -> None:
    for _ in range(100):
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url}: {log.read_text()[-2000:]}")


@dataclass
class Call:
    operation: str  # "SageMaker.CreateTrainingJob", "S3 PUT /bucket/key" (any REST call), "STS GetCallerIdentity", ...
    body: dict | str
    headers: dict = field(default_factory=dict)


class MotoServer:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.recording = folder / "moto-recording.jsonl"
        log = folder / "moto.log"
        env = {"MOTO_ENABLE_RECORDING": "1", "MOTO_RECORDER_FILEPATH": str(self.recording), "PATH": "/usr/bin:/bin"}
        self.process = subprocess.Popen(
            [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_for(f"{self.url}/moto-api/", "moto_server", self.process, log)

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }

    def client(self, service: str, region: str):
        return boto3.Session(region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing").client(
            service, endpoint_url=self.url
        )

    def reset_recording(self) -> None:
        self.recording.write_text("")

    def calls(self) -> list[Call]:
        if not self.recording.exists():
            return []
        calls = []
        for line in self.recording.read_text().splitlines():
            entry = json.loads(line)
            raw = entry.get("body") or ""
            if entry.get("body_encoded"):
                raw = base64.b64decode(raw).decode("utf-8", "replace")
            target = entry["headers"].get("X-Amz-Target", "")
            path = entry["url"].split("://", 1)[-1].split("/", 1)[-1]
            if target:
                calls.append(
                    Call(target.replace("AmazonEC2ContainerRegistry_V20150921", "ECR"), json.loads(raw) if raw else {})
                )
            elif "Action=" in raw:
                action = raw.split("Action=", 1)[1].split("&", 1)[0]
                calls.append(Call(f"Query {action}", raw))
            else:
                calls.append(Call(f"S3 {entry['method']} /{path.split('?')[0]}", raw, entry["headers"]))
        return calls

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class Registry:
    """Debian's docker-registry, no auth, plain HTTP on loopback (Docker treats 127.0.0.0/8 as insecure-allowed)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = folder / "registry.yml"
        config.write_text(
            f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\nhttp:\n  addr: {self.host}\n"
        )
        log = folder / "registry.log"
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log.open("w"), stderr=subprocess.STDOUT
        )
        wait_for(f"http://{self.host}/v2/", "docker-registry", self.process, log)

    def tags(self, repository: str) -> list[str]:
        with urllib.request.urlopen(f"http://{self.host}/v2/{repository}/tags/list") as response:
            return sorted(json.load(response)["tags"] or [])

    def digest(self, repository: str, tag: str) -> str:
        request = urllib.request.Request(
            f"http://{self.host}/v2/{repository}/manifests/{tag}",
            method="HEAD",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        with urllib.request.urlopen(request) as response:
            return response.headers["Docker-Content-Digest"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
