"""Operating an instance: `inv doctor` (healthy, then seeded faults), `inv clean` (dry run = real list), and the
on-start lifecycle script against a fake notebook root (Docker's data root moved, kernels restored, idempotent).

One project copy lives where a notebook's clone would (<tmp>/SageMaker/gs-ds-env) with one real kernel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import INV, clone_project, run_image, tool_env

import docker
from gs_ds_env.ops import clean
from gs_ds_env.settings import load_settings

pytestmark = [pytest.mark.slow, pytest.mark.docker]  # a real kernel, Docker's images and containers

CLEAN = run_image("clean")  # this run's repository for the images clean may remove


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    root = tmp_path_factory.mktemp("instance")
    notebook_root = root / "SageMaker"
    project = clone_project(notebook_root / "gs-ds-env")
    env = tool_env(WORKING_DIR=str(root / "work"), JUPYTER_DATA_DIR=str(root / "jupyter"), TORCH_BACKEND="none")
    built = subprocess.run(
        [INV, "kernel", "--theme", "tabular", "--py", "3.12"], cwd=project, env=env, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return root, notebook_root, project, env


def doctor(project: Path, env: dict, *args: str):
    return subprocess.run([INV, "doctor", *args], cwd=project, env=env, capture_output=True, text=True)


def test_doctor_on_a_healthy_setup_is_all_ok(instance, docker_engine):
    root, _, project, env = instance
    # A laptop-like setup (no notebook root): every line ok, exit 0.
    result = doctor(project, env, "--threshold", "99", "--notebook-root", str(root / "no-notebook-here"))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()[1:]
    assert lines and all(line.startswith("ok ") for line in lines), result.stdout
    assert any(
        "tabular_312" in line and "registered, venv healthy, smoke test: smoke tabular: ok" in line for line in lines
    )
    checks = json.loads(
        doctor(project, env, "--json", "--threshold", "99", "--notebook-root", str(root / "no-notebook-here")).stdout
    )
    assert checks["ok"] is True and {c["area"] for c in checks["checks"]} >= {"disk", "tools", "kernel", "lifecycle"}
    assert any(c["name"] == "venv tabular" for c in checks["checks"])


def test_lifecycle_moves_docker_root_restores_kernels_and_is_idempotent(instance):
    root, notebook_root, project, env = instance
    fake_bin = root / "fake-bin"
    fake_bin.mkdir(exist_ok=True)
    calls = root / "systemctl.calls"
    (fake_bin / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\n')
    (fake_bin / "systemctl").chmod(0o755)
    daemon_json = root / "etc/docker/daemon.json"
    daemon_json.parent.mkdir(parents=True, exist_ok=True)
    daemon_json.write_text(json.dumps({"log-driver": "json-file"}))
    kernels = root / "jupyter/kernels"
    shutil.rmtree(kernels)  # what a stop/start does to the kernelspecs
    lifecycle_env = {
        **env,
        "PATH": f"{fake_bin}{os.pathsep}{env['PATH']}",
        "NOTEBOOK_ROOT": str(notebook_root),
        "DOCKER_DAEMON_JSON": str(daemon_json),
        "NOTEBOOK_USER": subprocess.getoutput("id -un"),
    }
    log = notebook_root / ".myenv/restore-kernels.log"

    first = subprocess.run(
        [str(project / "bin/gs-env-lifecycle-on-start.sh")],
        env=lifecycle_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert first.returncode == 0, first.stderr
    assert f"docker data root -> {notebook_root}/.docker" in first.stdout
    assert json.loads(daemon_json.read_text()) == {"log-driver": "json-file", "data-root": f"{notebook_root}/.docker"}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and "jupyter-server" not in (calls.read_text() if calls.exists() else ""):
        time.sleep(0.5)
    assert "1 kernel(s) restored, 0 failed" in log.read_text()
    assert (kernels / "tabular_312/kernel.json").is_file()
    assert calls.read_text().splitlines() == ["restart docker", "restart jupyter-server"]

    before = daemon_json.read_bytes()
    second = subprocess.run(
        [str(project / "bin/gs-env-lifecycle-on-start.sh")],
        env=lifecycle_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 0 and "docker data root already" in second.stdout
    assert daemon_json.read_bytes() == before
    while time.monotonic() < deadline and calls.read_text().count("jupyter-server") < 2:
        time.sleep(0.5)
    assert calls.read_text().count("restart docker") == 1, "an unchanged data root must not restart docker"


@pytest.mark.parametrize(
    "content",
    ["{not json", '// a comment\n{"log-driver": "json-file"}', '["a", "list"]', '{"data-root": "/mnt/big/docker"}'],
    ids=["invalid JSON", "comments", "a list", "a data-root set on purpose"],
)
def test_lifecycle_never_fails_the_start_on_a_daemon_json_it_cannot_use_and_still_restores(instance, content):
    """A failing start script stops the notebook instance from starting: an unusable daemon.json is left as it is
    (one warning line), a data-root someone set elsewhere is kept, and the kernels are restored all the same."""
    root, notebook_root, project, env = instance
    fake_bin = root / "fake-bin-keep"
    fake_bin.mkdir(exist_ok=True)
    calls = root / f"systemctl-{abs(hash(content))}.calls"
    (fake_bin / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\n')
    (fake_bin / "systemctl").chmod(0o755)
    daemon_json = root / "keep/daemon.json"
    daemon_json.parent.mkdir(parents=True, exist_ok=True)
    daemon_json.write_text(content)
    shutil.rmtree(root / "jupyter/kernels", ignore_errors=True)
    result = subprocess.run(
        [str(project / "bin/gs-env-lifecycle-on-start.sh")],
        env={
            **env,
            "PATH": f"{fake_bin}{os.pathsep}{env['PATH']}",
            "NOTEBOOK_ROOT": str(notebook_root),
            "DOCKER_DAEMON_JSON": str(daemon_json),
            "NOTEBOOK_USER": subprocess.getoutput("id -un"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "Traceback" not in result.stdout + result.stderr, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: docker data root")]
    assert len(warnings) == 1, result.stdout
    assert daemon_json.read_text() == content  # left exactly as it was
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and "jupyter-server" not in (calls.read_text() if calls.exists() else ""):
        time.sleep(0.5)
    assert calls.read_text().splitlines() == ["restart jupyter-server"]  # docker was not restarted
    assert (root / "jupyter/kernels/tabular_312/kernel.json").is_file()


@pytest.mark.parametrize("damage", ["corrupt", "another python"])
def test_a_broken_kernel_json_is_reported_broken_and_make_kernel_repairs_it(instance, damage, docker_engine):
    root, _, project, env = instance
    spec = root / "jupyter/kernels/tabular_312/kernel.json"
    if not spec.is_file():  # an earlier test wiped the kernelspecs: put it back first
        assert subprocess.run([INV, "kernels-restore"], cwd=project, env=env, capture_output=True).returncode == 0
    if damage == "corrupt":
        spec.write_text('{"argv": ["/x/.venv/bin/python", "-m", "ipykernel_laun')
    else:
        document = json.loads(spec.read_text())
        document["argv"][0] = "/usr/bin/python3"
        spec.write_text(json.dumps(document))
    report = doctor(project, env, "--threshold", "99", "--notebook-root", str(root / "no-notebook-here"))
    assert report.returncode == 1
    assert "FAIL    kernel     tabular_312" in report.stdout and "broken kernelspec" in report.stdout
    listed = subprocess.run([INV, "kernels"], cwd=project, env=env, capture_output=True, text=True)
    assert "broken" in next(line for line in listed.stdout.splitlines() if line.startswith("tabular_312"))
    repaired = subprocess.run(
        [INV, "kernel", "--theme", "tabular", "--py", "3.12"], cwd=project, env=env, capture_output=True, text=True
    )
    assert repaired.returncode == 0, repaired.stderr[-2000:]
    assert "was missing or broken" in repaired.stderr and "registering it again" in repaired.stderr
    venv = project / "themes/tabular/kernel/.venv"
    assert json.loads(spec.read_text())["argv"][0] == str(venv / "bin/python")
    again = doctor(project, env, "--threshold", "99", "--notebook-root", str(root / "no-notebook-here"))
    assert again.returncode == 0, again.stdout


def test_doctor_names_each_seeded_fault_and_exits_1(instance, docker_engine):
    root, notebook_root, project, env = instance
    dangling = root / "jupyter/kernels/orphan_311"
    dangling.mkdir(parents=True)
    (dangling / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [str(root / "gone/.venv/bin/python"), "-m", "ipykernel_launcher"],
                "display_name": "orphan",
                "language": "python",
            }
        )
    )
    shutil.rmtree(project / "themes/tabular/kernel/.venv")
    result = doctor(project, env, "--threshold", "1", "--notebook-root", str(notebook_root))
    assert result.returncode == 1
    out = result.stdout
    assert (
        "FAIL    kernel     tabular_312" in out
        and "no longer exists -> fix: make kernel THEME=tabular PY=3.12 FORCE=1" in out
    )
    assert "kernelspec orphan_311" in out and "`jupyter kernelspec remove orphan_311`" in out
    assert "over the 1% threshold" in out
    # The notebook root exists here and docker's root is on / on this machine: that is a warning, with the fix.
    assert "WARN    disk       docker data root" in out and "lifecycle script moves it" in out
    report = json.loads(
        doctor(project, env, "--json", "--threshold", "1", "--notebook-root", str(notebook_root)).stdout
    )
    assert report["ok"] is False and sum(c["status"] == "fail" for c in report["checks"]) >= 3
    refused = doctor(project, env, "--threshold", "250")
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "error: --threshold 250 is not a percentage: use 1-100"
    )


def test_clean_dry_run_lists_what_the_real_run_removes(instance, base_image):
    root, _, project, env = instance
    env = {
        **env,
        "IMAGE_NAME": CLEAN,
        "ECR_REPOSITORY": CLEAN,
        "PY": "3.11",
        "BASE_IMAGE": base_image,
    }
    runs = project / "runs"
    (runs / "old-job").mkdir(parents=True)
    (runs / "old-job/model.tar.gz").write_bytes(b"x" * 4096)
    (runs / "old-job/run.json").write_text("{}")
    (runs / "new-job").mkdir()
    (runs / "new-job/run.json").write_text("{}")
    # Not runs: a user's own old folder (no run record), and a link to a folder outside runs/ (never followed).
    (runs / "my-analysis").mkdir()
    (runs / "my-analysis/notes.md").write_text("mine\n")
    elsewhere = root / "elsewhere-run"
    elsewhere.mkdir()
    (elsewhere / "run.json").write_text("{}")
    (runs / "linked-run").symlink_to(elsewhere, target_is_directory=True)
    month_ago = time.time() - 40 * 86400
    for folder in ("old-job", "my-analysis", "linked-run"):
        os.utime(runs / folder, (month_ago, month_ago), follow_symlinks=False)
    os.utime(elsewhere, (month_ago, month_ago))

    current = subprocess.run([INV, "build"], cwd=project, env=env, capture_output=True, text=True)
    assert current.returncode == 0, current.stderr[-3000:]
    client = docker.from_env()
    context = root / "stale-image"
    context.mkdir()
    # Stale images this checkout built (its label), and one another checkout sharing the daemon built.
    checkout = f"gs-ds-env.checkout={project.resolve()}"
    (context / "Dockerfile").write_text(
        f"FROM {base_image}\nLABEL gs-ds-env.content-tag=tabular_311-0000stale000 {checkout}\n"
    )
    client.images.build(path=str(context), tag=f"{CLEAN}:tabular_311-0000stale000", rm=True)
    (context / "Dockerfile").write_text(
        f"FROM {base_image}\nLABEL gs-ds-env.content-tag=tabular_311-2222other222 gs-ds-env.checkout=/elsewhere/gs\n"
    )
    client.images.build(path=str(context), tag=f"{CLEAN}:tabular_311-2222other222", rm=True)
    # A user's image built FROM it: it inherits the content-tag label, but it is not the project's.
    derived = root / "derived-image"
    derived.mkdir()
    (derived / "Dockerfile").write_text(f"FROM {CLEAN}:tabular_311-0000stale000\nLABEL mine=yes\n")
    client.images.build(path=str(derived), tag=f"{CLEAN}:my-derived", rm=True)
    # Another stale image, alone: removed with the package list parity keeps for its id; the current one's stays.
    (context / "Dockerfile").write_text(
        f"FROM {base_image}\nLABEL gs-ds-env.content-tag=tabular_311-1111stale111 {checkout}\n"
    )
    lone, _ = client.images.build(path=str(context), tag=f"{CLEAN}:tabular_311-1111stale111", rm=True)
    listed_packages = Path(env["WORKING_DIR"]) / "cache/images"
    listed_packages.mkdir(parents=True, exist_ok=True)
    for image in (lone, client.images.get(base_image)):
        (listed_packages / f"{image.id.removeprefix('sha256:')}.json").write_text("{}")

    def clean(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [INV, "clean", "--docker", "--runs", "--older-than", "30", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
        )

    planned = clean("--dry-run")
    assert planned.returncode == 0, planned.stderr
    listed = [
        line.removeprefix("would remove: ") for line in planned.stdout.splitlines() if line.startswith("would remove: ")
    ]
    assert any(f"{CLEAN}:tabular_311-0000stale000" in line for line in listed)
    assert any(f"{runs / 'old-job'}" in line for line in listed)
    assert not any(
        name in line for line in listed for name in ("new-job", "my-analysis", "linked-run", "my-derived", "other222")
    )
    # Another checkout's image only with --all-checkouts, and the plan says whose it is.
    wider = clean("--dry-run", "--all-checkouts")
    (theirs,) = [line for line in wider.stdout.splitlines() if "other222" in line]
    assert theirs.startswith("would remove: ") and "built by checkout /elsewhere/gs" in theirs
    assert (runs / "old-job").is_dir() and client.images.list(name=f"{CLEAN}:tabular_311-0000stale000")

    done = clean()
    assert done.returncode == 0, done.stderr
    removed = [line.removeprefix("remove: ") for line in done.stdout.splitlines() if line.startswith("remove: ")]
    assert removed == listed
    assert not (runs / "old-job").exists() and (runs / "new-job").is_dir()
    assert (runs / "my-analysis/notes.md").is_file() and (elsewhere / "run.json").is_file()
    assert not client.images.list(name=f"{CLEAN}:tabular_311-0000stale000")
    assert client.images.list(name=f"{CLEAN}:my-derived"), "a user's derived image is never removed"
    assert not client.images.list(name=f"{CLEAN}:tabular_311-1111stale111")
    assert sorted(path.name for path in listed_packages.iterdir()) == [
        f"{client.images.get(base_image).id.removeprefix('sha256:')}.json"
    ]
    assert client.images.list(name=f"{CLEAN}:tabular_311-2222other222"), "another checkout's image stays"
    client.images.remove(f"{CLEAN}:my-derived")
    client.images.remove(f"{CLEAN}:tabular_311-2222other222")
    current_tag = next(line.split()[1] for line in current.stdout.splitlines() if line.startswith("image: "))
    assert client.images.list(name=current_tag), "the theme's current image must survive"
    assert (project / "themes/tabular/kernel/manifest.env").is_file(), "clean never touches a kernel"


def test_doctor_without_any_uv_says_so_in_its_table(scratch_settings, monkeypatch):
    """No uv on PATH nor in .tools/uv (a fresh notebook before `make venv`): one warning row, not an error."""
    from gs_ds_env.kernel import locks
    from gs_ds_env.ops import doctor

    def no_uv(repo_root):
        raise locks.LockError("uv was not found")

    monkeypatch.setattr(locks, "uv_binary", no_uv)
    rows = {check.name: check for check in doctor.tool_checks(scratch_settings)}
    assert rows["uv"].status == doctor.WARN and rows["uv"].detail == "uv not found", rows["uv"]


def test_clean_does_exactly_its_plan_or_nothing(copy, tmp_path):
    settings = load_settings(repo_root=copy, working_dir=tmp_path / "work")
    runs = copy / "runs"
    for name in ("old-a", "old-b"):
        (runs / name).mkdir(parents=True)
        (runs / name / "run.json").write_text("{}")
    steps = clean.plan(settings, uv=False, pip=False, docker=False, runs=True, older_than=0)
    assert {Path(step.target).name for step in steps} >= {"old-a", "old-b"}
    # Between the plan and the run, old-b becomes a link to something else: nothing at all is removed.
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "run.json").write_text("{}")
    shutil.rmtree(runs / "old-b")
    (runs / "old-b").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(clean.CleanError, match="old-b changed since the plan was made"):
        clean.execute(settings, steps)
    assert (runs / "old-a/run.json").is_file() and (elsewhere / "run.json").is_file()
    (runs / "old-b").unlink()
    shutil.rmtree(runs / "old-a")


def test_lifecycle_installs_the_idle_watcher_only_when_asked_and_removes_it_when_unset(instance, tmp_path):
    """IDLE_STOP_MINUTES set: a systemd timer runs bin/gs-env-idle-stop.py every 5 minutes with that window (and
    the dry-run switch); a bad value is one warning, never a failed start; unset again: the timer is removed."""
    root, notebook_root, project, env = instance
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "systemctl.calls"
    (fake_bin / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\n')
    (fake_bin / "systemctl").chmod(0o755)
    systemd = tmp_path / "systemd"
    base = {
        **env, "PATH": f"{fake_bin}{os.pathsep}{env['PATH']}", "NOTEBOOK_ROOT": str(notebook_root),
        "DOCKER_DAEMON_JSON": str(tmp_path / "daemon.json"), "NOTEBOOK_USER": subprocess.getoutput("id -un"),
        "SYSTEMD_DIR": str(systemd),
    }  # fmt: skip

    def start(**extra):
        return subprocess.run([str(project / "bin/gs-env-lifecycle-on-start.sh")], env={**base, **extra},
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    on = start(IDLE_STOP_MINUTES="45", IDLE_STOP_DRY_RUN="1")
    assert on.returncode == 0 and "idle auto-stop: on, after 45 idle minutes" in on.stdout, on.stderr
    service = (systemd / "gs-ds-env-idle-stop.service").read_text()
    assert "Environment=IDLE_STOP_MINUTES=45" in service and "Environment=IDLE_STOP_DRY_RUN=1" in service
    assert f"ExecStart=/usr/bin/env python3 {project}/bin/gs-env-idle-stop.py" in service
    assert f"StandardOutput=append:{notebook_root}/.myenv/idle-stop.log" in service
    assert "OnUnitActiveSec=5min" in (systemd / "gs-ds-env-idle-stop.timer").read_text()
    assert "enable --now gs-ds-env-idle-stop.timer" in calls.read_text().splitlines()
    # What the unit runs: the watcher's own --help answers (stdlib only, the system's python3).
    helped = subprocess.run(["python3", str(project / "bin/gs-env-idle-stop.py"), "--help"], capture_output=True,
                            text=True)  # fmt: skip
    assert helped.returncode == 0 and "--minutes" in helped.stdout
    bad = start(IDLE_STOP_MINUTES="an hour")  # a typo turns it off (said), never fails the start
    assert bad.returncode == 0 and "warning: IDLE_STOP_MINUTES=an hour is not a whole number" in bad.stdout
    assert "idle auto-stop: off (no IDLE_STOP_MINUTES): its timer removed" in bad.stdout
    assert not list(systemd.glob("gs-ds-env-idle-stop.*"))
    assert "disable --now gs-ds-env-idle-stop.timer" in calls.read_text().splitlines()
    assert start(IDLE_STOP_MINUTES="30").returncode == 0 and (systemd / "gs-ds-env-idle-stop.timer").is_file()
    off = start()
    assert off.returncode == 0 and "idle auto-stop: off (no IDLE_STOP_MINUTES): its timer removed" in off.stdout
    assert not list(systemd.glob("gs-ds-env-idle-stop.*"))
    again = start()
    assert "idle auto-stop" not in again.stdout  # nothing installed, nothing to say
