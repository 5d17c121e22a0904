"""bin/gs-env-create-kernel.sh and bin/gs-env-restore-kernels.sh with real uv, real Pythons and real kernels.

Each test works on a scratch copy of bin/ and themes/ with its own WORKING_DIR and JUPYTER_DATA_DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import INV, REPO, clone_project, copy_repo, run_inv, tool_env, tree_snapshot
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from gs_ds_env.kernel.kernels import KernelError, remove_kernel
from gs_ds_env.settings import load_settings

pytestmark = pytest.mark.slow


def run_script(repo: Path, env: dict, *args: str, script: str = "gs-env-create-kernel.sh"):
    return subprocess.run([str(repo / "bin" / script), *args], env=env, capture_output=True, text=True)


def execute(kernel_client, code: str) -> str:
    chunks: list[str] = []

    def hook(message):
        if message["msg_type"] == "stream":
            chunks.append(message["content"]["text"])
        elif message["msg_type"] == "error":
            chunks.append(f"ERROR {message['content']['ename']}: {message['content']['evalue']}")

    reply = kernel_client.execute_interactive(code, output_hook=hook, timeout=120)
    assert reply["content"]["status"] == "ok", "".join(chunks)
    return "".join(chunks)


def kernel_facts(kernel_name: str, jupyter_dir: Path, monkeypatch) -> dict:
    """Start the registered kernel through jupyter_client and ask it where it runs."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(jupyter_dir))
    manager = KernelManager(kernel_name=kernel_name, kernel_spec_manager=KernelSpecManager())
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=90)
        out = execute(
            client,
            # gs_ds_env: the standalone script read theme.env's KERNEL_WITH_PROJECT=1 and installed the project
            "import sys, pandas, sklearn, xgboost, gs_ds_env\nprint(sys.executable)\nprint(sys.version.split()[0])\n"
            "!python -c 'import sys; print(sys.executable)'\n!which pip",
        )
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return {"executable": lines[0], "version": lines[1], "shell_python": lines[2], "shell_pip": lines[3]}


@pytest.fixture
def sandbox(tmp_path):
    repo = copy_repo(tmp_path / "repo", "bin", "themes")
    env = tool_env(WORKING_DIR=str(tmp_path / "work"), JUPYTER_DATA_DIR=str(tmp_path / "jupyter"))
    return repo, env, tmp_path / "jupyter"


@pytest.mark.parametrize(
    "args, message",
    [
        (["Bad-Theme", "3.12"], "is not a valid name"),
        (["nosuchtheme", "3.12"], "available: cv forecasting streamlit tabular tsai"),
        (["tabular", "3"], "is not of the form 3.N"),
        (["tabular", "python3.12"], "is not of the form 3.N"),
        (["tabular", "3.10"], "is older than the lock supports (Python >= 3.11)"),
        (["tabular", "3.12", "/no/such/requirements.txt"], "does not exist"),
        (["tabular", "3.12", "", "cuda"], "torch backend 'cuda' is not one of"),
        (["--frobnicate", "tabular", "3.12"], "unknown option"),
    ],
)
def test_bad_input_is_refused_with_one_line_and_nothing_changed(sandbox, args, message):
    repo, env, jupyter_dir = sandbox
    before = tree_snapshot(repo)
    result = run_script(repo, env, *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert tree_snapshot(repo) == before
    assert not jupyter_dir.exists()


def test_a_bad_kernel_with_project_from_the_environment_is_refused_before_anything(sandbox):
    repo, env, jupyter_dir = sandbox
    before = tree_snapshot(repo)
    result = run_script(repo, {**env, "KERNEL_WITH_PROJECT": "yes"}, "tabular", "3.12")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "gs-env-create-kernel: KERNEL_WITH_PROJECT 'yes' is not 0 or 1 (or unset: theme.env says)"
    ]
    assert tree_snapshot(repo) == before and not jupyter_dir.exists()


def test_the_uv_inv_passes_is_the_one_the_script_runs_and_a_bad_one_is_refused(sandbox, tmp_path):
    """inv passes the project's uv (make's .tools/uv when none is on PATH), so the script installs no second one."""
    repo, env, jupyter_dir = sandbox
    recorder = tmp_path / "recorded-uv"
    recorder.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "$0.calls"\nexit 3\n')
    recorder.chmod(0o755)
    result = run_script(repo, {**env, "UV": str(recorder)}, "tabular", "3.12")
    assert result.returncode != 0 and Path(f"{recorder}.calls").read_text().strip(), result.stderr
    before = tree_snapshot(repo)
    refused = run_script(repo, {**env, "UV": str(tmp_path / "no-such-uv")}, "tabular", "3.12")
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"gs-env-create-kernel: UV '{tmp_path / 'no-such-uv'}' is not an executable uv: unset it, or point it at one"
    ]
    assert tree_snapshot(repo) == before


def test_inv_hands_the_kernel_script_its_values_resolved(tmp_path):
    from gs_ds_env.kernel import kernels

    project = clone_project(tmp_path / "repo")
    for theme, with_project in (("tabular", "1"), ("streamlit", "0")):
        env = kernels.script_env(load_settings(repo_root=project, theme=theme, working_dir=tmp_path / "work"))
        assert env["KERNEL_WITH_PROJECT"] == with_project and env["WORKING_DIR"] == str(tmp_path / "work")
        assert Path(env["UV"]).is_file() and os.access(env["UV"], os.X_OK)


def test_help_names_the_script_and_its_arguments_and_does_nothing_else(sandbox):
    repo, env, _ = sandbox
    for script, arguments in (
        (
            "gs-env-create-kernel.sh",
            ["--force", "<theme>", "<python_version>", "[requirements_file]", "[torch_backend]"],
        ),
        ("gs-env-docker-build-push.sh", ["<theme>", "<aws_account_id>", "<region>", "<ecr_repo_name>", "<tag>"]),
        ("gs-env-restore-kernels.sh", ["[-h|--help]"]),
        ("gs-env-lifecycle-on-start.sh", ["[-h|--help]"]),
    ):
        before = tree_snapshot(repo)
        result = run_script(repo, env, "--help", script=script)
        usage = result.stdout.splitlines()[0] if result.stdout else ""
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert usage.startswith(f"Usage: {script} ") and all(argument in usage for argument in arguments), usage
        assert len(result.stdout.splitlines()) > 3  # what it does, not only the usage line
        assert tree_snapshot(repo) == before


def test_kernel_lifecycle_create_idempotent_restore_failed_rebuild_switch_python(sandbox, monkeypatch):
    repo, env, jupyter_dir = sandbox
    venv = repo / "themes/tabular/kernel/.venv"
    manifest = repo / "themes/tabular/kernel/manifest.env"

    # 1. create tabular_312: the kernel runs in the venv, for Python code and for `!` shell commands.
    created = run_script(repo, env, "tabular", "3.12")
    assert created.returncode == 0, created.stderr
    spec = json.loads((jupyter_dir / "kernels/tabular_312/kernel.json").read_text())
    assert spec["argv"][0] == str(venv / "bin/python")
    assert spec["env"]["VIRTUAL_ENV"] == str(venv)
    assert spec["env"]["PATH"] == f"{venv}/bin:${{PATH}}"
    assert spec["env"]["HF_HOME"].startswith(env["WORKING_DIR"])
    # `%pip` / `!uv pip` in the notebook keep their caches off the root disk too.
    assert spec["env"]["PIP_CACHE_DIR"] == f"{env['WORKING_DIR']}/cache/pip"
    assert spec["env"]["UV_CACHE_DIR"] == f"{env['WORKING_DIR']}/cache/uv"
    facts = kernel_facts("tabular_312", jupyter_dir, monkeypatch)
    assert facts["executable"] == str(venv / "bin/python")
    assert facts["version"].startswith("3.12.")
    assert facts["shell_python"] == str(venv / "bin/python")
    assert facts["shell_pip"] == str(venv / "bin/pip")
    text = manifest.read_text()
    for key in (
        'KERNEL_NAME="tabular_312"',
        'PYTHON_VERSION="3.12.',
        "INPUTS_SHA256=",
        "LOCK_SHA256=",
        "UV_VERSION=",
        'SMOKE="smoke tabular: ok',
        'TORCH_BACKEND="auto"',
        "CREATED_AT=",
    ):
        assert key in text
    frozen = (repo / "themes/tabular/kernel/requirements.lock.txt").read_text()
    assert "pandas==" in frozen and "ipykernel==" in frozen
    # uv's cache, pip's cache and managed Pythons live under WORKING_DIR, not in ~ or /.
    assert any((Path(env["WORKING_DIR"]) / "cache/uv").iterdir())

    # 2. same inputs, healthy venv: nothing is rebuilt.
    again = run_script(repo, env, "tabular", "3.12")
    assert again.returncode == 0 and "up to date" in again.stderr
    assert manifest.read_text() == text

    # 3. a notebook restart wipes the kernelspecs; the restore script brings them back from the manifests.
    shutil.rmtree(jupyter_dir / "kernels")
    restored = run_script(repo, env, script="gs-env-restore-kernels.sh")
    assert restored.returncode == 0, restored.stderr
    assert "1 kernel(s) restored, 0 failed" in restored.stderr
    assert kernel_facts("tabular_312", jupyter_dir, monkeypatch)["executable"] == str(venv / "bin/python")

    # 4. a rebuild that cannot resolve leaves the working kernel exactly as it was.
    broken = repo / "broken-requirements.txt"
    broken.write_text("pandas\nthis-package-does-not-exist-gs-ds-env==9.9.9\n")
    failed = run_script(repo, env, "--force", "tabular", "3.12", str(broken))
    assert failed.returncode != 0
    assert "was NOT changed" in failed.stderr
    assert manifest.read_text() == text
    assert not (repo / "themes/tabular/kernel/.venv.new").exists()
    assert kernel_facts("tabular_312", jupyter_dir, monkeypatch)["executable"] == str(venv / "bin/python")

    # 4b. a rebuild that installs but fails its smoke test is a failed rebuild too: the old kernel stays.
    smoke = repo / "themes/tabular/smoke.py"
    good_smoke = smoke.read_text()
    smoke.write_text("import pandas\nraise SystemExit('smoke broke on purpose')\n")
    smoked = run_script(repo, env, "--force", "tabular", "3.12")
    assert smoked.returncode == 5, smoked.stderr[-2000:]
    assert "smoke broke on purpose" in smoked.stderr
    assert "the smoke test themes/tabular/smoke.py failed in the new venv" in smoked.stderr
    assert "was NOT changed" in smoked.stderr
    assert manifest.read_text() == text
    assert not (repo / "themes/tabular/kernel/.venv.new").exists()
    assert kernel_facts("tabular_312", jupyter_dir, monkeypatch)["executable"] == str(venv / "bin/python")
    smoke.write_text(good_smoke)

    # 5. a Python that does not exist: refused, old kernel intact.
    missing = run_script(repo, {**env, "UV_PYTHON_DOWNLOADS": "never"}, "--force", "tabular", "3.99")
    assert missing.returncode != 0 and "no Python 3.99" in missing.stderr
    assert manifest.read_text() == text

    # 6. switch the theme to Python 3.11 with the cpu torch backend. The torch index is unreachable here, so
    #    this checks that the backend reaches uv (and the manifest) on a theme without torch, downloading no torch.
    switched = run_script(repo, env, "tabular", "3.11", "", "cpu")
    assert switched.returncode == 0, switched.stderr
    assert "--torch-backend cpu" in switched.stderr
    assert 'TORCH_BACKEND="cpu"' in manifest.read_text()
    assert (jupyter_dir / "kernels/tabular_311/kernel.json").is_file()
    assert not (jupyter_dir / "kernels/tabular_312").exists(), "the replaced venv's kernelspec must go"
    facts = kernel_facts("tabular_311", jupyter_dir, monkeypatch)
    assert facts["version"].startswith("3.11.") and facts["executable"] == str(venv / "bin/python")


def test_kernel_remove_dry_run_then_for_real(tmp_path, monkeypatch):
    from gs_ds_env.kernel.kernels import format_table, list_kernels, remove_kernel

    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    spec_dir = tmp_path / "jupyter/kernels/demo_312"
    spec_dir.mkdir(parents=True)
    repo = tmp_path / "repo"
    kernel_dir = repo / "themes/demo/kernel"
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [str(kernel_dir / ".venv/bin/python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "demo",
                "language": "python",
            }
        )
    )
    (kernel_dir / ".venv/bin").mkdir(parents=True)
    (kernel_dir / "manifest.env").write_text('KERNEL_NAME="demo_312"\nTHEME="demo"\nPYTHON_VERSION="3.12.1"\n')

    table = format_table(list_kernels(repo))
    assert "demo_312" in table and "python broken" in table and "yes" in table

    planned = remove_kernel(repo, "demo_312", with_venv=True, dry_run=True)
    assert planned[0].startswith("[dry-run] would remove kernelspec demo_312")
    assert planned[1].startswith("[dry-run] would delete venv")
    assert spec_dir.is_dir() and (kernel_dir / ".venv").is_dir()

    remove_kernel(repo, "demo_312", with_venv=True, dry_run=False)
    assert not spec_dir.exists() and not (kernel_dir / ".venv").exists()
    assert "venv missing" not in format_table(list_kernels(repo))  # manifest went with the venv


def test_the_import_check_finds_what_a_module_imports_at_load_time_without_importing_it(tmp_path):
    """What the kernel script runs in a venv that holds this project: the packages its modules import when they
    load must be installed (looked up, not imported); an import inside a function is its caller's business."""
    from gs_ds_env.kernel import import_check

    (tmp_path / "gs_ds_env/sub").mkdir(parents=True)
    (tmp_path / "training/titanic").mkdir(parents=True)
    (tmp_path / "gs_ds_env/sub/uses.py").write_text(
        "from __future__ import annotations\n\nimport json\nimport not_installed_anywhere_xyz.sub\n"
        "from . import sibling\n\n\ndef later():\n    import only_when_called_xyz\n"
    )
    (tmp_path / "training/titanic/train.py").write_text("from numpy import array\nfrom gs_ds_env import sub\n")
    assert import_check.missing(tmp_path) == {"not_installed_anywhere_xyz": "gs_ds_env/sub/uses.py"}
    refused = subprocess.run(
        [sys.executable, "-m", "gs_ds_env.kernel.import_check", str(tmp_path)], capture_output=True, text=True, cwd=REPO
    )
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == "not installed: not_installed_anywhere_xyz (imported by gs_ds_env/sub/uses.py)\n"
    # This project's own modules, in the project's venv (which holds every dependency): nothing missing.
    assert import_check.missing(REPO) == {}


# ---- kernel-remove touches only this project's kernels ---------------------------------------------------------
def test_kernel_remove_refuses_kernels_this_project_did_not_create(tmp_path, monkeypatch, project):
    jupyter = tmp_path / "jupyter"
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(jupyter))

    def spec(name: str, python: str) -> Path:
        folder = jupyter / "kernels" / name
        folder.mkdir(parents=True)
        (folder / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": name,
                    "language": "python",
                }
            )
        )
        return folder

    mine = spec("mine", "/usr/bin/python3")
    impostor = spec("tabular_312", "/usr/bin/python3")  # a theme kernel's name, someone else's python
    manifest = project / "themes/tabular/kernel/manifest.env"
    manifest.write_text('KERNEL_NAME="tabular_312"\nTHEME="tabular"\n')
    try:
        with pytest.raises(KernelError, match="'mine' was not created by this project"):
            remove_kernel(project, "mine", with_venv=False, dry_run=False)
        with pytest.raises(KernelError, match="runs /usr/bin/python3, not this project's venv"):
            remove_kernel(project, "tabular_312", with_venv=True, dry_run=False)
        result = subprocess.run(
            [INV, "kernel-remove", "python3"],
            cwd=project,
            capture_output=True,
            text=True,
            env=tool_env(JUPYTER_DATA_DIR=str(jupyter)),
        )
        assert result.returncode == 1 and result.stderr.strip().splitlines() == [
            "error: kernel 'python3' was not created by this project (no themes/*/kernel/manifest.env names it): "
            "refusing; `inv kernels` lists this project's kernels"
        ]
    finally:
        manifest.unlink()
    assert (mine / "kernel.json").is_file() and (impostor / "kernel.json").is_file()
    assert "python3" in KernelSpecManager().find_kernel_specs()


def test_a_damaged_manifest_is_listed_without_a_traceback(copy):
    manifest = copy / "themes/tabular/kernel/manifest.env"
    manifest.write_bytes(b'KERNEL_NAME="tabular_312"\nTHEME="tabular"\nSMOKE="caf\xe9 \xff"\n')
    try:
        listed = run_inv(copy, "kernels")
        assert "Traceback" not in listed.stdout + listed.stderr
        assert listed.stdout.splitlines()[1].startswith("tabular_312") and "venv missing" in listed.stdout
        report = run_inv(copy, "doctor", "--json")
        assert json.loads(report.stdout)["ok"] is False  # the kernel's venv is missing: a fail, said as JSON
    finally:
        manifest.unlink()
