#!/usr/bin/env python3
"""Stop this SageMaker notebook instance once it has been idle for --minutes (IDLE_STOP_MINUTES).

Idle means all of, each checked on every run (the lifecycle script runs this every 5 minutes):
  - Jupyter: no kernel busy (a long cell is work, however long ago it started) and no kernel, terminal or browser
    activity within the window, read from the server's own REST API with its own token (its runtime file, as
    jupyter_server and the classic notebook server write it, whichever the platform runs);
  - no running container of this project (a local training job, endpoint, transform, lab: their labels);
  - no `inv` or `make` process running in this checkout.
A server or a kernel it cannot read is never taken for idle: it says so and stops nothing. Then it calls
sagemaker:StopNotebookInstance for its own instance (its name from /opt/ml/metadata/resource-metadata.json),
signed here (SigV4) with the instance's role credentials. Standard library only: nothing is installed at start.
One log line per run: idle or not, and why. --dry-run (IDLE_STOP_DRY_RUN=1) says what it would do.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import json
import os
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

METADATA = "/opt/ml/metadata/resource-metadata.json"
RUNTIME_DIRS = ["/home/ec2-user/.local/share/jupyter/runtime", "/root/.local/share/jupyter/runtime"]
TIMEOUT = 10


def log(message: str) -> None:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{stamp} idle-stop: {message}", flush=True)


class NotIdle(Exception):
    """Something is at work (or cannot be read): the instance stays up."""


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- Jupyter ------------------------------------------------------------------------------------------------------
def servers(runtime_dirs: list[str]) -> list[dict]:
    """Running Jupyter servers, from their runtime files (jpserver-<pid>.json, nbserver-<pid>.json)."""
    found = []
    for folder in runtime_dirs:
        for path in sorted(Path(folder).glob("*server-*.json")):
            try:
                info = json.loads(path.read_text())
                os.kill(int(info["pid"]), 0)
            except (OSError, ValueError, KeyError):
                continue  # a file left by a server that is gone
            found.append(info)
    return found


def api(server: dict, path: str):
    # no_track_activity: these reads must not count as someone's activity (jupyter_server and notebook honour it)
    url = server["url"].rstrip("/") + "/" + path + "?no_track_activity=1"
    request = urllib.request.Request(url, headers={"Authorization": f"token {server.get('token', '')}"})
    context = None
    if url.startswith("https://") and server.get("hostname", "localhost") in ("localhost", "127.0.0.1", "0.0.0.0"):
        context = ssl._create_unverified_context()  # the notebook instance's own self-signed certificate, local only
    with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response:
        return json.loads(response.read())


def jupyter_last_activity(runtime_dirs: list[str]) -> tuple[datetime.datetime, str]:
    """The last kernel, terminal or browser activity and what it was; NotIdle when a kernel is busy or the server
    cannot be read."""
    running = servers(runtime_dirs)
    if not running:
        raise NotIdle(f"no Jupyter server found in {', '.join(runtime_dirs)}: cannot tell whether anyone works")
    candidates: list[tuple[datetime.datetime, int, str]] = []  # (when, rank, what): a kernel or terminal wins a tie
    for server in running:
        try:
            status, kernels = api(server, "api/status"), api(server, "api/kernels")
            try:
                terminals = api(server, "api/terminals")
            except urllib.error.HTTPError:
                terminals = []  # terminals disabled on this server
        except (OSError, ValueError) as error:
            raise NotIdle(
                f"the Jupyter server at {server.get('url')} cannot be read ({error}): a kernel there may hold unsaved "
                "work, so the instance stays up"
            ) from None
        for kernel in kernels:
            if kernel.get("execution_state") == "busy":
                raise NotIdle(f"kernel {kernel.get('name')} ({kernel.get('id', '')[:8]}) is busy: a cell is running")
        for stamp, rank, what in (
            *((k.get("last_activity"), 1, f"kernel {k.get('name')} {k.get('id', '')[:8]}") for k in kernels),
            *((t.get("last_activity"), 1, f"terminal {t.get('name')}") for t in terminals),
            (status.get("last_activity"), 0, "a browser or an API call"),
            (status.get("started"), 0, "the server's start"),
        ):
            if stamp:
                candidates.append((parse_time(stamp), rank, what))
    if not candidates:
        raise NotIdle("the Jupyter server reports no activity time: cannot tell")
    latest = max(candidates)
    return latest[0], latest[2]


# ---- this project's containers and commands ----------------------------------------------------------------------
def running_containers(checkout: str) -> list[str]:
    if not shutil.which("docker"):
        return []
    listed = subprocess.run(
        ["docker", "ps", "--filter", f"label=gs-ds-env.checkout={checkout}", "--format",
         '{{.Names}} ({{.Label "gs-ds-env.kind"}})'],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    if listed.returncode:
        raise NotIdle(f"docker ps failed ({listed.stderr.strip()[:120]}): cannot tell whether a job runs")
    return listed.stdout.splitlines()


def running_commands(checkout: str) -> list[str]:
    """`inv` and `make` processes whose working directory is in the checkout."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        words = [Path(a.decode(errors="replace")).name for a in argv[:2] if a]
        if (cwd == checkout or cwd.startswith(checkout + "/")) and ({"inv", "make"} & set(words)):
            found.append(f"pid {proc.name}: {' '.join(a.decode(errors='replace') for a in argv if a)[:80]}")
    return found


# ---- StopNotebookInstance, signed here --------------------------------------------------------------------------
def credentials() -> dict:
    """The environment's keys, else the instance role's (IMDSv2)."""
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return {"key": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
                "token": os.environ.get("AWS_SESSION_TOKEN", "")}  # fmt: skip
    base = "http://169.254.169.254/latest"
    token_request = urllib.request.Request(
        f"{base}/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"}
    )
    with urllib.request.urlopen(token_request, timeout=TIMEOUT) as response:
        token = response.read().decode()
    headers = {"X-aws-ec2-metadata-token": token}

    def get(path: str) -> str:
        with urllib.request.urlopen(urllib.request.Request(f"{base}/{path}", headers=headers), timeout=TIMEOUT) as r:
            return r.read().decode()

    role = get("meta-data/iam/security-credentials/").split("\n")[0]
    found = json.loads(get(f"meta-data/iam/security-credentials/{role}"))
    return {"key": found["AccessKeyId"], "secret": found["SecretAccessKey"], "token": found.get("Token", "")}


def stop_notebook_instance(name: str, region: str) -> None:
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or f"https://api.sagemaker.{region}.amazonaws.com"
    host = endpoint.split("://", 1)[1].rstrip("/")
    body = json.dumps({"NotebookInstanceName": name}).encode()
    keys = credentials()
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers = {
        "content-type": "application/x-amz-json-1.1",
        "host": host,
        "x-amz-date": stamp,
        "x-amz-target": "SageMaker.StopNotebookInstance",
    }
    if keys["token"]:
        headers["x-amz-security-token"] = keys["token"]
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        ["POST", "/", "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, hashlib.sha256(body).hexdigest()]
    )
    scope = f"{day}/{region}/sagemaker/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{keys['secret']}".encode()
    for part in (day, region, "sagemaker", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={keys['key']}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    request = urllib.request.Request(endpoint.rstrip("/") + "/", data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        response.read()


def instance(metadata: str) -> tuple[str, str]:
    found = json.loads(Path(metadata).read_text())
    return found["ResourceName"], found["ResourceArn"].split(":")[3]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("IDLE_STOP_MINUTES") or 0) or None,
                        help="idle this long, then stop (default IDLE_STOP_MINUTES)")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", default=os.environ.get("IDLE_STOP_DRY_RUN") == "1")
    parser.add_argument("--runtime-dir", action="append", help="Jupyter runtime folder(s) to look for servers in")
    parser.add_argument("--metadata", default=METADATA, help="the notebook instance's resource metadata file")
    parser.add_argument("--checkout", default=str(Path(__file__).resolve().parent.parent), help="this clone")
    args = parser.parse_args(argv)
    if args.minutes is None or args.minutes < 0:
        log("IDLE_STOP_MINUTES is not set (or negative): nothing to watch; set it, e.g. 60")
        return 2
    try:
        last, what = jupyter_last_activity(args.runtime_dir or RUNTIME_DIRS)
        containers = running_containers(args.checkout)
        if containers:
            raise NotIdle(f"this project's container(s) running: {', '.join(containers)}")
        commands = running_commands(args.checkout)
        if commands:
            raise NotIdle(f"a command of this project is running: {'; '.join(commands)}")
    except NotIdle as busy:
        log(f"not idle: {busy}")
        return 0
    idle = (datetime.datetime.now(datetime.timezone.utc) - last).total_seconds() / 60
    if idle < args.minutes:
        log(f"not idle long enough: last activity {idle:.0f} min ago ({what}), the window is {args.minutes:g} min")
        return 0
    try:
        name, region = instance(args.metadata)
    except (OSError, ValueError, KeyError, IndexError) as error:
        log(
            f"idle for {idle:.0f} min, but {args.metadata} does not name this notebook instance ({error}): not stopping"
        )
        return 1
    if args.dry_run:
        log(
            f"idle for {idle:.0f} min (window {args.minutes:g}): would stop notebook instance {name} in {region} (dry run)"
        )
        return 0
    log(f"idle for {idle:.0f} min (window {args.minutes:g}): stopping notebook instance {name} in {region}")
    try:
        stop_notebook_instance(name, region)
    except (OSError, ValueError, KeyError) as error:
        detail = error.read().decode(errors="replace")[:200] if isinstance(error, urllib.error.HTTPError) else error
        log(f"StopNotebookInstance failed: {detail}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
