"""Bad input to the serving and workspace commands (serve, predict, transform, endpoint.deploy, lab): one line that
says what is wrong and what to do, exit 2, no traceback, nothing started or lost. No container is needed: each is
refused before one would start."""

from __future__ import annotations

import json
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest
from conftest import INV, free_port, one_line_refusal, run_inv, tool_env

from gs_ds_env.settings import ConfigError


@pytest.fixture(scope="module")
def inputs(project, tmp_path_factory) -> tuple[Path, dict, Path]:
    """The module's project copy, its environment, and a small model.tar.gz."""
    scratch = tmp_path_factory.mktemp("serving-input")
    (scratch / "model.joblib").write_bytes(b"not really a model")
    archive = scratch / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(scratch / "model.joblib", arcname="model.joblib")
    env = tool_env(WORKING_DIR=str(scratch / "work"), PY="3.11", TARGET="local")
    return project, env, archive


def refused(project: Path, env: dict, *args) -> str:
    """The one line of a command refused before anything ran (exit 2)."""
    result = subprocess.run([INV, *map(str, args)], cwd=project, env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr, (result.stdout + result.stderr)[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_damaged_run_record_is_one_line(inputs):
    project, env, _ = inputs
    run = project / "runs/broken-run"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"target": "local", "theme": ')
    line = refused(project, env, "serve", "--run", "broken-run", "--dry-run")
    assert "runs/broken-run/run.json cannot be read (JSONDecodeError)" in line and "--model-data" in line
    (run / "run.json").write_text(json.dumps(["not", "a", "record"]))
    assert "cannot be read (TypeError)" in refused(project, env, "serve", "--run", "broken-run", "--dry-run")


def test_predict_checks_its_output_and_port_before_it_asks_anything(inputs, tmp_path):
    project, env, _ = inputs
    rows = tmp_path / "rows.csv"
    rows.write_text("1,2\n")
    # Nothing listens on that port: had predict asked first, the line would say so instead.
    port = str(free_port())
    line = refused(project, env, "predict", "--input", rows, "--port", port, "--output", "/no-such-folder/x.csv")
    assert (
        line
        == "error: --output /no-such-folder/x.csv: the folder /no-such-folder does not exist: create it or choose another"
    )
    assert "is not a usable port" in refused(project, env, "predict", "--input", rows, "--port", "99999")
    assert "is not an integer" in refused(project, env, "predict", "--input", rows, "--port", "eighty")


def test_transform_refuses_what_would_lose_or_mangle_rows_before_it_starts(inputs, tmp_path):
    project, env, archive = inputs
    model = ["--model-data", archive, "--theme", "tabular", "--dry-run"]
    latin = tmp_path / "latin/rows.csv"
    latin.parent.mkdir()
    latin.write_bytes("name,city\nJosé,Málaga\n".encode("latin-1"))
    line = refused(project, env, "transform", "--input", latin, "--output", tmp_path / "o1", *model)
    assert "is not UTF-8 text (byte 13, line 2): save it as UTF-8, e.g. iconv -f latin1 -t utf-8" in line
    broken = tmp_path / "quoted/rows.csv"
    broken.parent.mkdir()
    broken.write_text('id,note\n1,"two\nlines"\n2,fine\n')
    line = refused(project, env, "transform", "--input", broken, "--output", tmp_path / "o2", *model)
    assert "line 2 has a line break inside a quoted field" in line and "[" not in line
    existing = tmp_path / "answers.csv"
    existing.write_text("keep me\n")
    good = tmp_path / "good/rows.csv"
    good.parent.mkdir()
    good.write_text("1,2\n3,4\n")
    line = refused(project, env, "transform", "--input", good, "--output", existing, *model)
    assert "is a file: give a new folder" in line and existing.read_text() == "keep me\n"
    assert "give --header or --no-header, not both" in refused(
        project, env, "transform", "--input", good, "--header", "--no-header", "--output", tmp_path / "o3", *model
    )


def test_an_instance_type_sagemaker_does_not_offer_is_refused_before_any_aws_setting_is_read(inputs):
    project, env, archive = inputs
    line = refused(
        project, env, "endpoint.deploy", "--model-data", archive, "--instance-type", "ml.fake.huge", "--dry-run"
    )
    assert "--instance-type 'ml.fake.huge' is not an instance type SageMaker offers for endpoints" in line
    assert "did you mean" in refused(project, env, "endpoint.deploy", "--instance-type", "ml.m5.larg", "--dry-run")


def test_serve_takes_an_address_only_and_lab_will_not_mount_the_whole_machine(inputs):
    project, env, archive = inputs
    assert "is not an IP address" in refused(
        project, env, "serve", "--model-data", archive, "--host", "anywhere", "--dry-run"
    )
    for folder in ("/", "/etc", str(Path.home())):
        line = refused(project, env, "lab", "--folder", folder, "--port", str(free_port()))
        assert "would let the lab's container write anywhere" in line and "--force" in line


def test_a_taken_port_is_named_in_one_line(inputs):
    project, env, archive = inputs
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [INV, "serve", "--model-data", str(archive), "--theme", "tabular", "--port", str(port)],
            cwd=project, env=env, capture_output=True, text=True,
        )  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"error: port {port} is already in use on 127.0.0.1: stop what listens there — or choose another --port"
    ]


def test_a_local_endpoint_started_from_code_takes_a_free_port_when_its_own_is_taken(scratch_settings, capsys):
    """The notebook's `with local.running(settings, source, settings.serve_port)` must not fail because another
    `inv serve` (or any server) holds 8080: it takes a free port and says which; `inv serve --port` keeps its port."""
    from gs_ds_env.serve import local

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        chosen = local.pick_port(scratch_settings, port, fallback=True)
        assert (
            chosen != port
            and f"port {port} is in use; the local endpoint takes port {chosen} instead" in capsys.readouterr().out
        )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", chosen))  # it is free
        with pytest.raises(ConfigError, match=f"port {port} is already in use on 127.0.0.1"):
            local.pick_port(scratch_settings, port, fallback=False)
    assert local.pick_port(scratch_settings, port, fallback=True) == port  # free again: its own


def test_a_garbage_answering_endpoint_is_one_line_from_inv(project, titanic_csv):
    import http.server

    class Garbage(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the handler API's name
            body = b"<<<this is not an AWS response"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = tool_env(
            TARGET="sagemaker",
            S3_BUCKET="team-bucket",
            AWS_REGION="eu-west-1",
            SAGEMAKER_ROLE_ARN="arn:aws:iam::123456789012:role/x",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.server_port}",
            TITANIC_CSV=str(titanic_csv),
        )
        result = subprocess.run(
            [INV, "data", "--target", "sagemaker"], cwd=project, env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        server.shutdown()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_taken_port_is_refused_before_the_app_image_is_built(copy):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = run_inv(copy, "app", "--port", str(port))
    one_line_refusal(result, f"port {port} is already in use on 127.0.0.1")
    assert "[image]" not in result.stdout + result.stderr and time.monotonic() - started < 30
